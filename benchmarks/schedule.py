"""The cycle schedule's SQL cost: one tick (open and sweep) and the claims of one period, at scale.

`--bots` bots get a slot each; a tick is timed when it opens the period (inserts) and when
it only sweeps (everything recorded already, the minute-by-minute case); then `--workers`
threads race to claim every slot, as that many workers handed the same jobs would. Each slot
must be won exactly once; the figure is claims per second including the losing attempts.

    python -m benchmarks.schedule [--bots 1000] [--workers 4] [--database-url URL] [--json]

Without `--database-url` a fresh SQLite file (the embedded default) is used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.bots import create_bot
from core.cycle import slots
from core.db import make_engine, migrate, session_scope


def run(*, bots: int, workers: int, url: str) -> dict[str, Any]:
    migrate(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        for i in range(bots):
            create_bot(session, slug=f"bench-{i}", name=f"Bench {i}")
    now = datetime.now(UTC)
    started = time.perf_counter()
    due = slots.open_and_sweep(engine, now=now, minutes=60)
    opening = time.perf_counter() - started
    started = time.perf_counter()
    again = slots.open_and_sweep(engine, now=now, minutes=60)
    sweeping = time.perf_counter() - started
    assert len(due) == len(again) == bots

    won = [0] * workers
    go = threading.Barrier(workers)

    def worker(n: int) -> None:
        go.wait()
        for item in due:
            won[n] += slots.claim(engine, bot_id=item.bot_id, slot=item.slot, now=now)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claiming = time.perf_counter() - started
    engine.dispose()
    if sum(won) != bots:
        raise SystemExit(f"{sum(won)} slots won for {bots} bots: a slot ran twice or never")
    return {"database": url.split(":", 1)[0], "bots": bots, "workers": workers,
            "tick_opening_ms": round(opening * 1000, 1),
            "tick_sweeping_ms": round(sweeping * 1000, 1),
            "slots_won": sum(won), "claim_attempts_per_s": round(bots * workers / claiming)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database-url", default=None,
                        help="an empty database to use (its tables are created)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        result = run(bots=args.bots, workers=args.workers, url=url)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['database']}: {result['bots']} bots, {result['workers']} workers")
    print(f"  a tick opening the period: {result['tick_opening_ms']} ms")
    print(f"  a tick sweeping it again:  {result['tick_sweeping_ms']} ms")
    print(f"  slots won: {result['slots_won']} of {result['bots']} "
          f"(each exactly once); {result['claim_attempts_per_s']} claim attempts/s")


if __name__ == "__main__":
    main()
