"""Replay: what auto-training would have done, simulated week by week over a labelled question set.

A labelled CSV (`text,label`) plays the customers. A fraction of the labels is covered by the
seeded KB; each week, simulated customers ask questions (labels drawn with a skewed
frequency), the real `answer` path replies, a simulated human agent answers what the bot
could not with that label's reference answer, customers react (thanks, thumbs, leaving after
a wrong answer), the real cycle runs through the production code path, and a simulated
admin with a limited number of decisions per week approves, edits or rejects suggestions
from their evidence. It is both a product feature and the project's quality benchmark.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.bots import Autonomy
from core.conversations import ConversationIn, ingest_batch
from core.models import GapEvidence, Suggestion, seeded_ids
from core.policy.commands import (
    Actor,
    Approve,
    Channel,
    CreateEntry,
    EditAndApprove,
    Reject,
    RejectReason,
    UndoSuggestion,
    UpdateSettings,
)
from core.review import BotRef, Command, Outcome, SuggestionView
from core.services import Services
from core.status import SuggestionKind, SuggestionStatus

FALLBACK = "Sorry, I'm not sure about that. Let me connect you with a teammate."
# What agents tell a customer whose question is not about this business.
DECLINE = "Sorry, I can only help with questions about your account and our services."
OFF_TOPIC = "(off-topic)"  # the label of questions from the off-topic pool
# Under core/data so that it ships in the wheel with the rest of the package data.
OFF_TOPIC_FILE = Path(__file__).parent / "data" / "replay" / "off_topic.txt"
PURE = 0.9  # a gap whose majority label has at least this share counts as pure
ADMIN = Actor(name="replay admin", channel=Channel.api)


MACRO_OPENING = "Thanks for reaching out!"
MACRO_CLOSING = "Is there anything else I can help with?"


class AgentStyle(StrEnum):
    """How the simulated agents answer: one canned macro for every topic, or a distinct
    answer per topic."""

    macro = "macro"
    distinct = "distinct"


@dataclass(frozen=True)
class ReplayConfig:
    # The defaults are the realistic replay; `seed_phrasings=4, off_topic=0,
    # agent_style=distinct, min_purity=0` is the replay as it was before issue 13.
    coverage: float = 0.4
    conversations_per_week: int = 600
    decisions_per_week: int = 40
    weeks: int = 6
    seed_phrasings: int = 1  # phrasings per covered label in the seeded KB
    off_topic: float = 0.03  # share of customers asking something off-topic
    agent_style: AgentStyle = AgentStyle.macro
    # The reviewer rejects a suggestion whose gap's largest label is under this share of its
    # questions (0: the reviewer only reads the suggestion's own phrasings, as before).
    min_purity: float = 0.6
    zipf: float = 1.0        # skew of label frequencies
    p_thumbs_up: float = 0.3
    p_abandon_after_wrong: float = 0.3
    seed: int = 0
    autonomy: Autonomy = Autonomy.conservative
    # Cycles (each followed by the admin's review) a week, at even times. A deployed bot runs
    # its cycle hourly and its digest daily, so the admin reviews daily: 7. 1 is the replay
    # as it was before (one cycle and one review at each week's end).
    cycles_per_week: int = 7


@dataclass
class WeekRow:
    week: int
    conversations: int = 0
    resolved: int = 0
    wrong: int = 0
    escalated: int = 0
    covered_asked: int = 0  # customers asking a question the seeded KB covers
    covered_resolved: int = 0  # ... who got its right answer
    suggestions_pending: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    cycle_seconds: float = 0.0
    generation_seconds: float = 0.0
    auto_published: int = 0
    auto_correct: int = 0  # auto-published ones the admin would have approved as they were
    undone: int = 0  # wrong auto-published ones the admin undid after the announcement

    @property
    def resolution(self) -> float:
        return self.resolved / self.conversations if self.conversations else 0.0

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.conversations if self.conversations else 0.0


# Confidence buckets of the calibration table: (label, lowest score, highest score).
BUCKETS = [("0-59", 0, 59), ("60-69", 60, 69), ("70-79", 70, 79), ("80-89", 80, 89),
           ("90-100", 90, 100)]


@dataclass(frozen=True)
class Verdict:
    """One simulated decision: the suggestion's confidence then, and what the admin did."""

    confidence: int
    outcome: str  # approved | edited | rejected
    purity: float | None = None  # share of the gap's majority label (None: a rollback)
    off_topic: bool = False  # most of the gap's questions were off-topic


@dataclass
class ReplayResult:
    weeks: list[WeekRow] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def calibration(self) -> str:
        """Score bucket → how often suggestions in it were approved without edit."""
        rows = [("bucket", "decided", "approved as is")]
        spans = [(label, lo, hi) for label, lo, hi in BUCKETS] + [("≥ 80", 80, 100),
                                                                  ("≥ 90", 90, 100)]
        for label, lo, hi in spans:
            inside = [v for v in self.verdicts if lo <= v.confidence <= hi]
            rate = (f"{sum(v.outcome == 'approved' for v in inside) / len(inside):.0%}"
                    if inside else "-")
            rows.append((label, str(len(inside)), rate))
        return "\n".join(f"{a:>7} {b:>8} {c:>15}" for a, b, c in rows)

    def table(self) -> str:
        auto = any(w.auto_published for w in self.weeks)
        head = (f"{'week':>4} {'convs':>6} {'resolved':>9} {'wrong':>7} {'escal.':>7} "
                f"{'pending':>8} {'approved':>9} {'edited':>7} {'rejected':>9} {'cycle s':>8}"
                + (f" {'auto':>5} {'auto ok':>8}" if auto else ""))
        lines = [head, "-" * len(head)]
        for w in self.weeks:
            lines.append(
                f"{w.week:>4} {w.conversations:>6} {w.resolution:>8.1%} {w.wrong_rate:>7.1%} "
                f"{w.escalated:>7} {w.suggestions_pending:>8} {w.approved:>9} {w.edited:>7} "
                f"{w.rejected:>9} {w.cycle_seconds:>8.2f}"
                + (f" {w.auto_published:>5} {w.auto_correct:>8}" if auto else ""))
        decided = sum(w.approved + w.edited + w.rejected for w in self.weeks)
        if decided:
            approved = sum(w.approved for w in self.weeks) / decided
            edited = sum(w.edited for w in self.weeks) / decided
            rejected = sum(w.rejected for w in self.weeks) / decided
            lines.append(f"decided {decided}: approved as is {approved:.0%}, "
                         f"edited {edited:.0%}, rejected {rejected:.0%}")
        published = sum(w.auto_published for w in self.weeks)
        if published:
            correct = sum(w.auto_correct for w in self.weeks)
            lines.append(f"auto-published {published}: {correct} correct "
                         f"({correct / published:.1%}); "
                         f"{sum(w.undone for w in self.weeks)} wrong ones undone by the admin")
        cycle_s = sum(w.cycle_seconds for w in self.weeks)
        if cycle_s:
            drafting = sum(w.generation_seconds for w in self.weeks)
            lines.append(f"drafting answers: {drafting:.2f} s of {cycle_s:.2f} s of cycles "
                         f"({drafting / cycle_s:.0%})")
        lines += self.realism()
        if self.verdicts:
            lines += ["", "calibration (confidence when decided):", self.calibration()]
        return "\n".join(lines)

    def realism(self) -> list[str]:
        """Gap purity, decisions spent on off-topic suggestions and week 1's share of the
        covered ceiling (what the seeded KB alone could resolve)."""
        lines = []
        judged = [v for v in self.verdicts if v.purity is not None]
        if judged:
            purities = [v.purity or 0.0 for v in judged]
            pure = sum(p >= PURE for p in purities)
            lines.append(f"gap purity over {len(judged)} decided suggestions: mean majority-"
                         f"label share {sum(purities) / len(purities):.1%}; "
                         f"{pure / len(judged):.0%} at ≥ {PURE:.0%}")
        if self.verdicts:
            off = sum(v.off_topic for v in self.verdicts)
            lines.append(f"off-topic suggestions decided: {off} "
                         f"({off / len(self.verdicts):.1%} of decisions)")
        if self.weeks and self.weeks[0].covered_asked:
            # Only customers asking what the seeded KB covers count: answers the bot learned
            # during the week for other topics are not part of this ceiling.
            w = self.weeks[0]
            lines.append(f"week 1 covered ceiling: {w.covered_resolved} resolved of "
                         f"{w.covered_asked} customers asking a covered question "
                         f"({w.covered_resolved / w.covered_asked:.1%}); all customers "
                         f"{w.resolution:.1%} resolved, {w.wrong_rate:.1%} wrong")
        return lines

    def chart(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")  # no display on a server
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        weeks = [w.week for w in self.weeks]
        ax.plot(weeks, [100 * w.resolution for w in self.weeks], marker="o",
                label="automatic resolution")
        ax.plot(weeks, [100 * w.wrong_rate for w in self.weeks], marker="x",
                label="wrong answers")
        ax.set_xlabel("week")
        ax.set_ylabel("% of conversations")
        ax.set_ylim(0, 100)
        ax.set_xticks(weeks)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("Replay: resolution by week")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def load_labelled(path: Path) -> dict[str, list[str]]:
    """Questions per label from a CSV whose first column is the text and second the label."""
    by_label: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or len(header) < 2:
            raise ValueError(f"{path}: expected a header with at least two columns: text,label")
        for n, row in enumerate(reader, start=2):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}:{n}: expected text,label")
            by_label[row[1].strip()].append(row[0].strip())
    if len(by_label) < 2:
        raise ValueError(f"{path}: needs at least two labels")
    return dict(by_label)


# Generic support facts; each label's reference answer combines a few of them, so answers
# to different labels differ the way real agents' answers to different topics do (a shared
# template with only the topic swapped would make every answer look alike).
FACTS = [
    "Open the app and go to Settings, then Account.",
    "It usually takes 3 to 5 working days.",
    "You will get an email as soon as it is done.",
    "There is no fee for this.",
    "A fee of 1% applies, shown before you confirm.",
    "You can do it yourself from the Payments tab.",
    "For your security we need to verify your identity first.",
    "Contact us from the Help section if it has not arrived after 7 days.",
    "This is only available for accounts older than 30 days.",
    "We cannot reverse it once it is confirmed.",
    "Freeze the card straight away from the Cards tab.",
    "Upload a photo of your ID and a selfie.",
    "The exchange rate is updated every hour on weekdays.",
    "Top-ups by bank transfer arrive within one working day.",
    "Refunds go back to the original payment method.",
    "Pending transactions disappear after 7 days if the merchant does not collect them.",
    "You can order a replacement for free once a year.",
    "Limits reset at midnight UTC.",
    "Tap the transaction and choose Report a problem.",
    "Virtual cards can be created instantly and deleted any time.",
    "Your PIN can be changed at any ATM that supports it.",
    "Cash withdrawals above the monthly allowance are charged 2%.",
    "We support transfers to over 30 countries.",
    "The beneficiary's details must match their bank records exactly.",
]


def reference_answer(label: str, style: AgentStyle = AgentStyle.distinct) -> str:
    """The simulated agents' answer for a label (the data set has questions only)."""
    topic = label.replace("_", " ").replace("-", " ")
    rng = random.Random(hashlib.sha256(label.encode()).digest())
    if style is AgentStyle.macro:
        # A canned response: the same frame for every topic, the topic's words and one short
        # fact, so replies to different topics look much alike (as a help desk's do).
        return f"{MACRO_OPENING} Regarding {topic}: {rng.choice(FACTS)} {MACRO_CLOSING}"
    return f"About {topic}: " + " ".join(rng.sample(FACTS, 3))


def load_off_topic(path: Path = OFF_TOPIC_FILE) -> list[str]:
    """The shipped pool of off-topic questions (chit-chat, general knowledge, questions for
    other businesses), one a line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [t.strip() for t in lines if t.strip() and not t.startswith("#")]


def _statements(text: str) -> frozenset[str]:
    """What an answer says, as a set of normalised sentences (order and spacing aside)."""
    parts = re.split(r"(?<=[.!?:])\s+", text.strip())
    return frozenset(" ".join(p.lower().split()) for p in parts if p.strip())


class Replay:
    def __init__(self, services: Services, *, data: dict[str, list[str]],
                 config: ReplayConfig, bot_slug: str = "replay") -> None:
        self.svc = services
        self.cfg = config
        self.rng = random.Random(config.seed)
        labels = sorted(data)
        self.rng.shuffle(labels)
        self.labels = labels
        covered_n = max(1, round(config.coverage * len(labels)))
        self.covered = set(labels[:covered_n])
        self.kb_texts: dict[str, list[str]] = {}
        self.pool: dict[str, list[str]] = {}
        for label in labels:
            texts = list(data[label])
            self.rng.shuffle(texts)
            k = config.seed_phrasings if label in self.covered else 0
            self.kb_texts[label] = texts[:k]
            self.pool[label] = texts[k:] or texts
        # Zipf-like popularity over a random order of labels.
        order = labels[:]
        self.rng.shuffle(order)
        self.weights = {label: 1.0 / (rank + 1) ** config.zipf for rank, label in
                        enumerate(order)}
        self.answer_label = {self._content(self.reference(lb)): lb for lb in labels}
        self.entry_label: dict[str, str] = {}
        self.text_label: dict[str, str] = {t: lb for lb, ts in data.items() for t in ts}
        self.off_topic: list[str] = load_off_topic() if config.off_topic > 0 else []
        for text in self.off_topic:
            self.text_label.setdefault(text, OFF_TOPIC)
        self.bot_slug = bot_slug
        self.bot: BotRef | None = None
        self.verdicts: list[Verdict] = []
        self.now: datetime | None = None  # the simulated time of the admin's decisions

    def reference(self, label: str) -> str:
        """The agents' answer for a label in this replay's agent style."""
        if label == OFF_TOPIC:
            return DECLINE
        return reference_answer(label, self.cfg.agent_style)

    # -- setup -------------------------------------------------------------------------------

    def seed(self) -> BotRef:
        bot = self.svc.review.create_bot(slug=self.bot_slug, name="Replay")
        if self.cfg.autonomy is not Autonomy.conservative:
            self.svc.review.execute(UpdateSettings(
                bot_id=bot.id, patch={"autonomy": self.cfg.autonomy.value}, actor=ADMIN),
                bot=bot)
        cmds = [CreateEntry(bot_id=bot.id, question=self.kb_texts[lb][0],
                            answer=self.reference(lb), variants=self.kb_texts[lb][1:],
                            actor=ADMIN) for lb in sorted(self.covered)]
        for created, cmd in zip(self.svc.policy.create_entries(cmds), cmds, strict=True):
            self.entry_label[created["id"]] = self.answer_label[self._content(cmd.answer)]
        self.bot = self.svc.review.bot(self.bot_slug)
        return self.bot

    # -- one week ----------------------------------------------------------------------------

    def _conversation(self, n: int, label: str, at: datetime, row: WeekRow) -> dict[str, Any]:
        assert self.bot is not None
        text = self.rng.choice(self.off_topic if label == OFF_TOPIC else self.pool[label])
        row.covered_asked += label in self.covered
        t = at
        msgs: list[dict[str, Any]] = [{"role": "customer", "text": text, "at": t.isoformat()}]
        feedback: list[dict[str, Any]] = []
        got = self.svc.answer(bot=self.bot, question=text)
        step = timedelta(seconds=20)
        if got.escalate:
            row.escalated += 1
            msgs.append({"role": "bot", "text": FALLBACK, "at": (t + step).isoformat()})
            msgs.append({"role": "agent", "text": self.reference(label),
                         "at": (t + 10 * step).isoformat()})
            msgs.append({"role": "customer", "text": "ok thanks",
                         "at": (t + 11 * step).isoformat()})
        else:
            msgs.append({"role": "bot", "text": got.answer or "", "at": (t + step).isoformat(),
                         "entry_id": got.entry_id})
            if self.entry_label.get(got.entry_id or "") == label:
                row.resolved += 1
                row.covered_resolved += label in self.covered
                if self.rng.random() < self.cfg.p_thumbs_up:
                    feedback.append({"message_index": 1, "rating": "up"})
                else:
                    msgs.append({"role": "customer", "text": "great, thanks!",
                                 "at": (t + 2 * step).isoformat()})
            else:
                row.wrong += 1
                if self.rng.random() >= self.cfg.p_abandon_after_wrong:
                    feedback.append({"message_index": 1, "rating": "down"})
                    msgs.append({"role": "customer", "text": "that doesn't answer my question",
                                 "at": (t + 2 * step).isoformat()})
                    msgs.append({"role": "agent", "text": self.reference(label),
                                 "at": (t + 10 * step).isoformat()})
                    row.escalated += 1
        return {"id": f"w{row.week}-{n}", "started_at": at.isoformat(), "messages": msgs,
                "feedback": feedback, "channel": "replay"}

    def week(self, number: int, start: datetime) -> WeekRow:
        """One week: `cycles_per_week` rounds of customers answered by the bot as it is
        then, reported, analysed by a cycle and reviewed by the admin with their share of the
        week's decisions."""
        assert self.bot is not None
        row = WeekRow(week=number)
        rounds = max(1, self.cfg.cycles_per_week)
        period = timedelta(days=7) / rounds
        for r in range(rounds):
            # The week's conversations and decisions spread evenly over its rounds.
            convs = (self.cfg.conversations_per_week * (r + 1)) // rounds \
                - (self.cfg.conversations_per_week * r) // rounds
            decisions = (self.cfg.decisions_per_week * (r + 1)) // rounds \
                - (self.cfg.decisions_per_week * r) // rounds
            self._round(row, start + period * r, period, convs, decisions)
        row.suggestions_pending = len(self.svc.review.queue(self.bot))
        return row

    def _round(self, row: WeekRow, start: datetime, period: timedelta, conversations: int,
               decisions: int) -> None:
        assert self.bot is not None
        labels = list(self.weights)
        weights = [self.weights[lb] for lb in labels]
        convs = []
        seconds = max(1, int(period.total_seconds()) - 600)
        for _ in range(conversations):
            # Drawn only when there is an off-topic share, so a replay without one draws
            # the same random numbers as before it existed.
            if self.cfg.off_topic > 0 and self.rng.random() < self.cfg.off_topic:
                label = OFF_TOPIC
            else:
                label = self.rng.choices(labels, weights=weights)[0]
            at = start + timedelta(seconds=self.rng.randint(0, seconds))
            convs.append(self._conversation(row.conversations, label, at, row))
            row.conversations += 1
        if convs:
            ingest_batch(self.svc.engine, bot_id=self.bot.id,
                         conversations=[ConversationIn.model_validate(c) for c in convs])
        t0 = time.perf_counter()
        as_of = start + period
        cycle = self.svc.review.run_cycle(self.bot, as_of=as_of)
        row.cycle_seconds += time.perf_counter() - t0
        row.generation_seconds += cycle.generation_seconds
        # The admin reviews an hour after the cycle, in simulated time (watches, gap
        # lifecycles and the daily limit all count in it).
        self.now = as_of + timedelta(hours=1)
        self._audit_autonomy(row, as_of, since=start)
        self._review(row, self.verdicts, limit=decisions)

    # -- the simulated admin ------------------------------------------------------------------

    def _says(self, answer: str) -> str | None:
        """The label whose reference answer this text states exactly (the admin reads what an
        answer says: a reworded greeting or sentence order does not matter, a missing or an
        extra fact does)."""
        return self.answer_label.get(self._content(answer))

    def _content(self, answer: str) -> frozenset[str]:
        """What an answer says; a macro's greeting and sign-off say nothing (drafting drops
        them, and a reviewer would not send a draft back for lacking them)."""
        said = _statements(answer)
        if self.cfg.agent_style is AgentStyle.macro:
            said -= _statements(f"{MACRO_OPENING} {MACRO_CLOSING}")
        return said

    def _review(self, row: WeekRow, verdicts: list[Verdict], *, limit: int) -> None:
        assert self.bot is not None
        if limit <= 0:
            return
        for sug in self.svc.review.queue(self.bot, limit=limit):
            purity, off = None, False
            if sug.kind != SuggestionKind.rollback:
                votes = self._gap_votes(sug)
                if votes:
                    top, n = votes.most_common(1)[0]
                    purity, off = n / votes.total(), top == OFF_TOPIC
            verdicts.append(Verdict(sug.confidence, self._decide(sug, row), purity, off))

    def _gap_questions(self, sug: SuggestionView) -> list[str]:
        """All the customer questions of the suggestion's gap (its evidence), or its own
        phrasings when it has no gap."""
        with Session(self.svc.engine) as session:
            gap_id = session.exec(select(Suggestion.gap_id).where(
                Suggestion.id == sug.id)).first()
            questions = list(session.exec(select(GapEvidence.question).where(
                GapEvidence.gap_id == gap_id)).all()) if gap_id else []
        return questions or [sug.question, *sug.variants]

    def _gap_votes(self, sug: SuggestionView) -> Counter[str]:
        """The labels of the gap's questions (ones the data set does not know left out)."""
        return Counter(lb for q in self._gap_questions(sug)
                       if (lb := self.text_label.get(q)) is not None)

    def _judge(self, sug: SuggestionView) -> tuple[str, str | None, list[str]]:
        """Judge from the evidence a reviewer sees: is the answer right for what the customers
        asked, and are the phrasings about the same thing? Returns the verdict (approve,
        edit, reject_wrong, reject_not_a_gap), the label asked about and the phrasings that
        belong to it."""
        asked = [self.text_label.get(v) for v in [sug.question, *sug.variants]]
        votes = Counter(lb for lb in asked if lb)
        if not votes:
            return "reject_not_a_gap", None, []
        label, _ = votes.most_common(1)[0]
        target = self.entry_label.get(sug.entry_id or "") if sug.entry_id else None
        if label == OFF_TOPIC:
            return "reject_not_a_gap", None, []
        if self.cfg.min_purity > 0:
            # The reviewer reads the whole evidence: customers asking about several things
            # are not one gap, off-topic ones are not a gap at all, and a change to another
            # topic's entry would tell its customers the wrong thing.
            gap_votes = self._gap_votes(sug)
            if gap_votes:
                gap_label, n = gap_votes.most_common(1)[0]
                if gap_label == OFF_TOPIC or n / gap_votes.total() < self.cfg.min_purity:
                    return "reject_not_a_gap", None, []
                if target is not None and target != gap_label and sug.kind in (
                        SuggestionKind.improve_answer, SuggestionKind.add_variants):
                    return "reject_wrong", gap_label, []
        good_variants = [v for v in sug.variants if self.text_label.get(v) == label]
        if sug.kind == "new_answer" or target is None:
            answer_ok = self._says(sug.answer) == label
        else:
            answer_ok = target == label and (sug.kind == "add_variants"
                                             or self._says(sug.answer) == label)
        if answer_ok and len(good_variants) == len(sug.variants) and \
                self.text_label.get(sug.question) in (label, None):
            return "approve", label, good_variants
        if target is not None and target != label:
            return "reject_wrong", label, good_variants
        return "edit", label, good_variants

    def _decide(self, sug: SuggestionView, row: WeekRow) -> str:
        if sug.kind == "rollback":
            return self._decide_rollback(sug, row)
        verdict, label, good_variants = self._judge(sug)
        if verdict == "reject_not_a_gap":
            self._execute(Reject(suggestion_id=sug.id, actor=ADMIN,
                                 reason=RejectReason.not_a_gap, at=self.now))
            row.rejected += 1
            return SuggestionStatus.rejected
        assert label is not None
        if verdict == "approve":
            result = self._execute(Approve(suggestion_id=sug.id, actor=ADMIN, at=self.now))
            row.approved += 1
            outcome = SuggestionStatus.approved
        elif verdict == "reject_wrong":
            self._execute(Reject(suggestion_id=sug.id, actor=ADMIN,
                                 reason=RejectReason.wrong_information, at=self.now))
            row.rejected += 1
            return SuggestionStatus.rejected
        else:
            result = self._execute(EditAndApprove(
                suggestion_id=sug.id, actor=ADMIN, answer=self.reference(label),
                variants=good_variants, at=self.now))
            row.edited += 1
            outcome = "edited"
        if result.entry is not None and result.entry.id not in self.entry_label:
            self.entry_label[result.entry.id] = label
        return outcome

    def _execute(self, command: Command) -> Outcome:
        assert self.bot is not None
        return self.svc.review.execute(command, bot=self.bot)

    def _decide_rollback(self, sug: SuggestionView, row: WeekRow) -> str:
        """"Consider rolling back": the admin rolls back when the entry's live answer is not
        its topic's, and otherwise keeps the change."""
        assert self.bot is not None and sug.entry_id is not None
        entry = self.svc.review.entry(sug.entry_id, bot=self.bot)
        label = self.entry_label.get(sug.entry_id)
        if self._says(entry.answer) != label:
            self._execute(Approve(suggestion_id=sug.id, actor=ADMIN, at=self.now))
            row.approved += 1
            return SuggestionStatus.approved
        self._execute(Reject(suggestion_id=sug.id, actor=ADMIN, reason=RejectReason.other,
                             at=self.now))
        row.rejected += 1
        return SuggestionStatus.rejected

    def _audit_autonomy(self, row: WeekRow, as_of: datetime, *, since: datetime) -> None:
        """Judge what autonomy published in this cycle (after `since`, up to `as_of`) as the
        admin would have judged it had it been theirs to decide; the admin undoes the wrong
        ones once told."""
        assert self.bot is not None
        published = [s for s in self.svc.review.queue(
            self.bot, status=SuggestionStatus.auto_published)
            if s.decided is not None and s.decided.at is not None
            and since < s.decided.at <= as_of]
        for sug in published:
            verdict, _, _ = self._judge(sug)
            row.auto_published += 1
            if sug.entry_id and sug.entry_id not in self.entry_label:
                # The new entry answers whichever topic its answer states.
                said = self._says(sug.answer)
                if said:
                    self.entry_label[sug.entry_id] = said
            if verdict == "approve":
                row.auto_correct += 1
            else:
                self._execute(UndoSuggestion(suggestion_id=sug.id, actor=ADMIN))
                row.undone += 1

    def run(self, *, start: datetime | None = None) -> ReplayResult:
        # Seeded ids: a tie anywhere broken by id (gaps, suggestions) then falls the same
        # way on every run, so the same seed gives the same figures.
        with seeded_ids(self.cfg.seed):
            if self.bot is None:
                self.seed()
            begin = start or datetime(2026, 1, 5, tzinfo=UTC)
            result = ReplayResult(verdicts=self.verdicts)
            for number in range(1, self.cfg.weeks + 1):
                result.weeks.append(self.week(number,
                                              begin + timedelta(days=7 * (number - 1))))
            return result
