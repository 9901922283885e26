"""The cycle at scale: a full re-analysis of 100,000 stored conversations and an incremental
cycle over 5,000 new ones, with time and peak memory next to their targets.

The 100,000 are first analysed by a normal cycle (the state a service reaches week by week),
then re-analysed in full after gap_similarity changes: the figure the target is for.

A fresh data dir (SQLite + embedded Chroma, the embedded default) gets one bot whose KB covers
40% of the BANKING77 intents (one entry per intent, the replay's per-intent reference answer),
then `--conversations` transcripts written straight to storage with
`core.conversations.store_conversations` (the answer path is far too slow to produce them):
~60% answered by the bot with the right entry and thanked, ~30% escalated (the bot's fallback
line, then a human agent's per-intent answer), ~10% a wrong entry that gets a thumbs-down (or
is abandoned). Questions are BANKING77 texts, intents drawn with a Zipf-like skew, spread over
`--weeks` weeks.

    python -m benchmarks.cycle [--conversations 100000] [--new 5000] [--weeks 20] [--json]

Peak RSS is the process's high-water mark (resource.getrusage), so it includes the embedding
model and everything before the measured step: an upper bound for the step itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

BANKING77_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
TARGET_FULL_S = 300.0
TARGET_FULL_RSS_MB = 2048.0
TARGET_INCREMENTAL_S = 30.0

COVERAGE = 0.4
P_RESOLVED, P_ESCALATED = 0.60, 0.30  # the rest: a wrong answer, thumbs-down or abandoned
OPENERS = ["", "", "Hi, ", "Hello! ", "Quick question: ", "hey "]
THANKS = ["great, thanks!", "thank you", "perfect, got it"]
INGEST_BATCH = 1_000


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_questions(data_dir: Path = BANKING77_DIR) -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for name in ("train.csv", "test.csv"):
        with (data_dir / name).open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["text"].strip():
                    by_label[row["category"].strip()].append(row["text"].strip())
    return dict(by_label)


class Generator:
    """Transcripts of the realistic mix above, deterministic for a seed."""

    def __init__(self, data: dict[str, list[str]], entries: dict[str, str], *,
                 seed: int) -> None:
        from core.replay import FALLBACK, reference_answer

        self.rng = random.Random(seed)
        self.data = data
        self.entries = entries  # label -> entry id, for the covered labels
        self.fallback = FALLBACK
        self.answer = {lb: reference_answer(lb) for lb in data}
        labels = sorted(data)
        order = labels[:]
        self.rng.shuffle(order)
        weights = {lb: 1.0 / (rank + 1) ** 0.7 for rank, lb in enumerate(order)}
        self.covered = sorted(entries)
        self.all_labels = labels
        self.w_all = [weights[lb] for lb in labels]
        self.w_covered = [weights[lb] for lb in self.covered]

    def conversation(self, cid: str, at: datetime) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        step = timedelta(seconds=20)
        if roll < P_RESOLVED:
            label = rng.choices(self.covered, self.w_covered)[0]
        else:
            label = rng.choices(self.all_labels, self.w_all)[0]
        question = rng.choice(OPENERS) + rng.choice(self.data[label])
        msgs: list[dict[str, Any]] = [{"role": "customer", "text": question,
                                       "at": at.isoformat()}]
        feedback: list[dict[str, Any]] = []
        if roll < P_RESOLVED:
            msgs.append({"role": "bot", "text": self.answer[label], "entry_id":
                         self.entries[label], "at": (at + step).isoformat()})
            if rng.random() < 0.3:
                feedback.append({"message_index": 1, "rating": "up"})
            else:
                msgs.append({"role": "customer", "text": rng.choice(THANKS),
                             "at": (at + 2 * step).isoformat()})
        elif roll < P_RESOLVED + P_ESCALATED or label not in self.entries:
            msgs.append({"role": "bot", "text": self.fallback, "at": (at + step).isoformat()})
            msgs.append({"role": "agent", "text": self.answer[label],
                         "at": (at + 10 * step).isoformat()})
            msgs.append({"role": "customer", "text": rng.choice(THANKS),
                         "at": (at + 11 * step).isoformat()})
        else:
            wrong = rng.choice([lb for lb in self.covered if lb != label])
            msgs.append({"role": "bot", "text": self.answer[wrong],
                         "entry_id": self.entries[wrong], "at": (at + step).isoformat()})
            if rng.random() < 0.7:
                feedback.append({"message_index": 1, "rating": "down"})
                msgs.append({"role": "customer", "text": "that doesn't answer my question",
                             "at": (at + 2 * step).isoformat()})
                msgs.append({"role": "agent", "text": self.answer[label],
                             "at": (at + 10 * step).isoformat()})
        return {"id": cid, "started_at": at.isoformat(), "messages": msgs,
                "feedback": feedback, "channel": "web"}

    def batches(self, prefix: str, n: int, start: datetime, end: datetime
                ) -> Iterator[list[dict[str, Any]]]:
        span = (end - start).total_seconds()
        times = sorted(start + timedelta(seconds=self.rng.random() * span) for _ in range(n))
        for first in range(0, n, INGEST_BATCH):
            yield [self.conversation(f"{prefix}-{i}", times[i])
                   for i in range(first, min(n, first + INGEST_BATCH))]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(*, conversations: int, new: int, weeks: int, seed: int, keep_data: bool,
         log: Callable[[str], None]) -> dict[str, Any]:
    from core.bots import create_bot
    from core.conversations import ConversationIn, store_conversations
    from core.db import session_scope
    from core.models import Bot, Gap, GapEvidence, Suggestion
    from core.policy.commands import Actor, Channel, CreateEntry
    from core.replay import reference_answer
    from core.services import build_core_services
    from core.settings import load_settings
    from core.status import OPEN_SUGGESTION_STATUSES

    data = load_questions()
    data_dir = Path(tempfile.mkdtemp(prefix="autotrain-cycle-bench-"))
    settings = load_settings(AUTOTRAIN_DATA_DIR=data_dir, DATABASE_URL="", CHROMA_URL="",
                             REDIS_URL="")
    results: dict[str, Any] = {"conversations": conversations, "new": new, "weeks": weeks,
                               "cpus": os.cpu_count(), "data_dir": str(data_dir),
                               "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        svc = build_core_services(settings)
        rng = random.Random(seed)
        labels = sorted(data)
        rng.shuffle(labels)
        covered = labels[:round(COVERAGE * len(labels))]
        actor = Actor(name="bench", channel=Channel.cli)
        with session_scope(svc.engine) as session:
            bot = create_bot(session, slug="bench", name="Cycle benchmark")
        cmds = [CreateEntry(bot_id=bot.id, question=data[lb][0], answer=reference_answer(lb),
                            variants=data[lb][1:4], actor=actor) for lb in covered]
        created = svc.policy.create_entries(cmds)
        entries = {lb: c["id"] for lb, c in zip(covered, created, strict=True)}
        gen = Generator(data, entries, seed=seed)
        start = datetime(2026, 1, 5, tzinfo=UTC)
        end = start + timedelta(weeks=weeks)

        def ingest(prefix: str, n: int, a: datetime, b: datetime) -> float:
            t0 = time.perf_counter()
            for batch in gen.batches(prefix, n, a, b):
                with session_scope(svc.engine) as session:
                    store_conversations(session, bot_id=bot.id, conversations=[
                        ConversationIn.model_validate(c) for c in batch])
            return time.perf_counter() - t0

        log(f"[cycle-bench] storing {conversations:,} conversations over {weeks} weeks ...")
        results["ingest_seconds"] = round(ingest("hist", conversations, start, end), 1)
        log(f"[cycle-bench]   stored in {results['ingest_seconds']} s; first analysis ...")
        first, seconds = _timed(lambda: svc.cycle.run(bot_id=bot.id, as_of=end))
        results["first"] = {"seconds": round(seconds, 1), "peak_rss_mb": round(_peak_rss_mb()),
                            **first.public()}
        log(f"[cycle-bench]   {results['first']}")
        svc.close()

        # What a full re-analysis is for: the admin changed gap_similarity. Fresh services
        # (cold caches), as after a restart.
        svc = build_core_services(settings)
        with session_scope(svc.engine) as session:
            stored_bot = session.get(Bot, bot.id)
            assert stored_bot is not None
            stored_bot.settings = {**stored_bot.settings, "gap_similarity": 0.6}
        log("[cycle-bench] full re-analysis at gap_similarity 0.6 ...")
        rss_before = _peak_rss_mb()
        full, seconds = _timed(lambda: svc.cycle.reanalyze(bot_id=bot.id, as_of=end))
        results["full"] = {"seconds": round(seconds, 1), "peak_rss_mb": round(_peak_rss_mb()),
                           "peak_rss_mb_before": round(rss_before), **full.public(),
                           "signals": dict(full.signals),
                           "suggestions_carried": full.suggestions_carried,
                           "suggestions_withdrawn": full.suggestions_withdrawn,
                           "gaps_merged": full.gaps_merged, "gaps_split": full.gaps_split}
        log(f"[cycle-bench]   {results['full']}")
        svc.close()

        # A restarted worker: a cold embedding cache, as for questions never seen before.
        svc = build_core_services(settings)
        log(f"[cycle-bench] {new:,} new conversations; incremental cycle ...")
        ingest("new", new, end, end + timedelta(days=2))
        inc, seconds = _timed(lambda: svc.cycle.run(bot_id=bot.id,
                                                    as_of=end + timedelta(days=2)))
        results["incremental"] = {"seconds": round(seconds, 1), **inc.public(),
                                  "suggestions_updated": inc.suggestions_updated,
                                  "generation_seconds": round(inc.generation_seconds, 2)}
        log(f"[cycle-bench]   {results['incremental']}")
        with Session(svc.engine) as session:
            results["gaps_by_status"] = dict(session.exec(
                select(Gap.status, func.count()).where(Gap.bot_id == bot.id)
                .group_by(Gap.status)).all())
            results["evidence_rows"] = session.exec(select(func.count()).select_from(
                GapEvidence)).one()
            results["open_suggestions"] = session.exec(select(func.count()).where(
                Suggestion.bot_id == bot.id,
                col(Suggestion.status).in_(OPEN_SUGGESTION_STATUSES))).one()
        svc.close()
        results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    return results


def format_table(r: dict[str, Any]) -> str:
    first, full, inc = r["first"], r["full"], r["incremental"]
    rows = [
        ("figure", "measured", "target"),
        (f"first analysis of {r['conversations']:,} conversations (every text embedded; "
         "about the cost of --full --reembed)", f"{first['seconds']:.1f} s", ""),
        (f"full re-analysis of {r['conversations']:,} conversations",
         f"{full['seconds']:.1f} s", f"<= {TARGET_FULL_S:.0f} s"),
        ("  peak RSS (whole benchmark process)", f"{full['peak_rss_mb']:,} MB",
         f"<= {TARGET_FULL_RSS_MB:.0f} MB"),
        (f"incremental cycle, {r['new']:,} new over {r['conversations']:,} stored",
         f"{inc['seconds']:.1f} s", f"<= {TARGET_INCREMENTAL_S:.0f} s"),
        ("  of which drafting answers (offline generator)",
         f"{inc['generation_seconds']:.2f} s "
         f"({inc['generation_seconds'] / max(inc['seconds'], 1e-9):.0%})", "<= 20%"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"first: {first['gaps']} open gaps, {first['suggestions_created']} "
                 f"suggestions; peak RSS {first['peak_rss_mb']:,} MB")
    lines.append(f"full: {full['conversations_analyzed']:,} conversations, signals "
                 f"{full['signals']}, {full['gaps']} open gaps, "
                 f"{full['suggestions_created']} suggestions created, "
                 f"{full['suggestions_carried']} carried over, {full['suggestions_withdrawn']} "
                 f"withdrawn, {full['gaps_merged']} merged, {full['gaps_split']} split")
    lines.append(f"incremental: {inc['conversations_analyzed']:,} conversations, "
                 f"{inc['suggestions_created']} suggestions created, "
                 f"{inc['suggestions_updated']} updated")
    lines.append(f"gaps by status {r['gaps_by_status']}, {r['evidence_rows']:,} evidence rows, "
                 f"{r['open_suggestions']} open suggestions; storing took "
                 f"{r['ingest_seconds']} s; {r['cpus']} CPUs, load average "
                 f"{r['loadavg_start']} at start, {r['loadavg_end']} at end")
    return "\n".join(lines)


def passed(r: dict[str, Any]) -> bool:
    return (r["full"]["seconds"] <= TARGET_FULL_S
            and r["full"]["peak_rss_mb"] <= TARGET_FULL_RSS_MB
            and r["incremental"]["seconds"] <= TARGET_INCREMENTAL_S)


def cli(argv: list[str] | None = None) -> int:
    """Exit status 0 when every target is met, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cycle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=5_000)
    parser.add_argument("--weeks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args(argv)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    r = main(conversations=args.conversations, new=args.new, weeks=args.weeks, seed=args.seed,
             keep_data=args.keep_data, log=log)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print()
        print(format_table(r))
    return 0 if passed(r) else 1


if __name__ == "__main__":
    sys.exit(cli())
