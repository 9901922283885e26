"""PNG charts for Slack: the share of conversations the bot resolved alone, week by week."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A quarter of weekly bars stays readable on a phone; older weeks are in the API's metrics.
WEEKS_SHOWN = 12
SIZE_INCHES = (8.0, 4.0)
DPI = 100
BAR = "#2eb67d"  # Slack's green: the number going up is the good news
THIN = "#b8dfcc"  # a week with few conversations: its share says little
# Fewer conversations than this in a week and its bar is drawn pale.
THIN_WEEK = 20
ACTIVATED = "#e01e5a"
WEEK = timedelta(days=7)


def resolution_chart(buckets: list[dict[str, Any]], *, title: str | None = None,
                     activated_at: datetime | None = None) -> bytes:
    """A bar per week of `automatic_resolution_rate` (buckets as `Review.metrics` returns
    them, oldest first), each labelled with its conversations; a line where auto-training
    started changing the bot (`activated_at`). PNG bytes; a plain "no conversations yet"
    image when there is nothing to draw."""
    # The object API with an explicit Agg canvas: no pyplot, so no global figure state, no
    # display, and safe to call from a worker thread.
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    weeks = [b for b in buckets if b.get("conversations")][-WEEKS_SHOWN:]
    ax.set_title(title or "Resolved by the bot alone, by week", loc="left", fontsize=12)
    if not weeks:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No conversations yet", ha="center", va="center", fontsize=16,
                color="#616061", transform=ax.transAxes)
        return _png(fig)
    starts = [_start(b["start"]) for b in weeks]
    rates = [float(b.get("automatic_resolution_rate") or 0.0) for b in weeks]
    counts = [int(b["conversations"]) for b in weeks]
    xs = list(range(len(weeks)))
    bars = ax.bar(xs, rates, width=0.7,
                  color=[BAR if n >= THIN_WEEK else THIN for n in counts])
    for rect, rate, n in zip(bars, rates, counts, strict=True):
        ax.annotate(f"{rate:.0%}\n{n} conv.", (rect.get_x() + rect.get_width() / 2, rate),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8, color="#1d1c1d")
    ax.set_xticks(xs, [f"{s:%b} {s.day}" for s in starts], fontsize=8)
    ax.set_ylim(0, 1.18)  # room above a 100% bar for its label
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("Week starting", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if activated_at is not None:
        _mark_activation(ax, starts, activated_at)
    fig.tight_layout()
    return _png(fig)


def _mark_activation(ax: Any, starts: list[datetime], activated_at: datetime) -> None:
    """A dashed line before the first week auto-training changed the bot: before and after
    at a glance. Nothing when it started before the weeks shown (every bar is "after")."""
    first = next((i for i, s in enumerate(starts) if s + WEEK > activated_at), None)
    if first is None or (first == 0 and starts[0] > activated_at):
        return
    x = first - 0.5
    ax.axvline(x, color=ACTIVATED, linestyle="--", linewidth=1)
    ax.text(x + 0.05, 1.15, "auto-training on", color=ACTIVATED, fontsize=8, va="top")


def _start(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
