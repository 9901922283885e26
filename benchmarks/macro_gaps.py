"""Gap purity when agents answer from canned macros of shapes the replay does not use.

The replay's agents paste one macro shape. Here every failed question of a labelled set is
handed to an agent who answers from one of three macro shapes, each wrapping a short body
(the label's words and one fact drawn from a deliberately small list, so neighbouring topics
often share their fact):

- slot: a greeting, "Regarding {topic}: {fact}", a sign-off;
- signature: a greeting, the body, a sentence every reply carries, a signature with the
  agent's name (three agents take turns), contact lines and legal text;
- steps: numbered steps shared by every procedure, then the topic's own step.

Labels are drawn from families of neighbouring topics (card, transfer, top-up, cash,
exchange, payment), the ones that mix. Each week, each label's next questions are stored as
escalated conversations and a cycle runs; at the end the open gaps are read back:

- purity: the share of all gap questions that belong to their gap's majority label;
- mixed: gaps whose majority label holds under 90% of their questions;
- gaps per label: above 1 a topic is spread over several gaps.

    python -m benchmarks.macro_gaps [--data CSV] [--labels 30] [--per-week 5] [--weeks 3]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"
FAMILIES = ("card", "transfer", "top_up", "cash", "exchange", "payment")
FACTS = ["It usually takes 3 to 5 working days.", "There is no fee for this.",
         "You can do it yourself in the app.", "We need to verify your identity first.",
         "It cannot be undone once confirmed.", "Contact us again if it takes over a week."]
AGENTS = ["Maria Lopez", "James Okafor", "Lena Fischer"]


def escalated(cid: str, question: str, reply: str, at: datetime) -> dict[str, Any]:
    """The customer asks, the bot falls back, an agent answers."""
    return {"id": cid, "started_at": at.isoformat(), "messages": [
        {"role": "customer", "text": question, "at": at.isoformat()},
        {"role": "bot", "text": "Sorry, I'm not sure about that. Let me connect you with an "
                                "agent.", "at": (at + timedelta(seconds=2)).isoformat()},
        {"role": "agent", "text": reply, "at": (at + timedelta(minutes=3)).isoformat()}]}


def body(label: str, rng: random.Random) -> str:
    return f"About {label.replace('_', ' ')}: {rng.choice(FACTS)}"


def macro(shape: str, text: str, agent: int) -> str:
    if shape == "slot":
        return (f"Good morning and thank you for getting in touch with us! {text} Let us "
                "know if there is anything more we can do for you.")
    if shape == "signature":
        return (f"Dear customer,\n\n{text}\nYou can reach our team around the clock in the "
                f"app.\n\nBest wishes,\n{AGENTS[agent % len(AGENTS)]}\nExample Bank Customer "
                "Service\nwww.example-bank.test | +44 20 0000 0000\nThis e-mail is "
                "confidential. If you received it in error, please delete it.")
    return ("Thanks for your message. Here is what to do:\n1. Open the Example Bank app.\n"
            f"2. Tap Help in the menu.\n3. {text}\nIf this did not solve it, just reply here.")


def run_shape(shape: str, data: dict[str, list[str]], *, labels: int, per_week: int,
              weeks: int, seed: int) -> dict[str, Any]:
    from core.bots import create_bot
    from core.conversations import ConversationIn, store_conversations
    from core.db import session_scope
    from core.models import Gap, GapEvidence
    from core.services import build_core_services
    from core.settings import load_settings
    from core.status import GapStatus

    rng = random.Random(seed)
    chosen = sorted(lb for lb in data if any(f in lb for f in FAMILIES))
    rng.shuffle(chosen)
    chosen = chosen[:labels]
    reply = {lb: body(lb, rng) for lb in chosen}
    label_of = {q: lb for lb in chosen for q in data[lb]}
    data_dir = Path(tempfile.mkdtemp(prefix="autotrain-macro-bench-"))
    try:
        svc = build_core_services(load_settings(AUTOTRAIN_DATA_DIR=data_dir, DATABASE_URL="",
                                                CHROMA_URL="", REDIS_URL=""))
        with session_scope(svc.engine) as session:
            bot_id = create_bot(session, slug="bench", name="Macro benchmark").id
        start = datetime(2026, 1, 5, 9, tzinfo=UTC)
        pools = {lb: rng.sample(data[lb], len(data[lb])) for lb in chosen}
        n = 0
        for week in range(weeks):
            convs = []
            for lb in chosen:
                for q in pools[lb][week * per_week:(week + 1) * per_week]:
                    at = start + timedelta(weeks=week, minutes=n)
                    convs.append(escalated(
                        f"c{n}", q, macro(shape, reply[lb], n), at))
                    n += 1
            with session_scope(svc.engine) as session:
                store_conversations(session, bot_id=bot_id, conversations=[
                    ConversationIn.model_validate(c) for c in convs])
            svc.cycle.run(bot_id=bot_id, as_of=start + timedelta(weeks=week, days=6))
        with Session(svc.engine) as session:
            rows = session.exec(select(GapEvidence.gap_id, GapEvidence.question)
                                .join(Gap, Gap.id == GapEvidence.gap_id)  # type: ignore[arg-type]
                                .where(Gap.bot_id == bot_id, Gap.status == GapStatus.open)).all()
        svc.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    votes: dict[str, Counter[str]] = {}
    for gap_id, question in rows:
        votes.setdefault(gap_id, Counter())[label_of.get(question, "?")] += 1
    total = sum(v.total() for v in votes.values())
    majority = sum(v.most_common(1)[0][1] for v in votes.values())
    mixed = sum(1 for v in votes.values() if v.most_common(1)[0][1] < 0.9 * v.total())
    return {"shape": shape, "gaps": len(votes), "questions": total,
            "purity": majority / total if total else 1.0, "mixed": mixed,
            "gaps_per_label": len(votes) / len(chosen)}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.macro_gaps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--labels", type=int, default=30)
    parser.add_argument("--per-week", type=int, default=5)
    parser.add_argument("--weeks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", nargs="+", default=["slot", "signature", "steps"])
    args = parser.parse_args(argv)
    from core.replay import load_labelled

    data = load_labelled(args.data)
    print(f"{'shape':<10} {'gaps':>5} {'questions':>9} {'purity':>7} {'mixed':>5} "
          f"{'gaps/label':>10}")
    for shape in args.shapes:
        r = run_shape(shape, data, labels=args.labels, per_week=args.per_week,
                      weeks=args.weeks, seed=args.seed)
        print(f"{r['shape']:<10} {r['gaps']:>5} {r['questions']:>9} {r['purity']:>7.1%} "
              f"{r['mixed']:>5} {r['gaps_per_label']:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
