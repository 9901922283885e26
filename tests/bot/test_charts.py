"""The weekly resolution chart `/autotrain stats` uploads: a real PNG, with data and without."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
from matplotlib.image import imread

from bot.charts import ACTIVATED, BAR, PNG_SIGNATURE, resolution_chart

MONDAY = datetime(2025, 3, 3, tzinfo=UTC)


def weeks(rates: list[float], *, conversations: int = 40) -> list[dict[str, object]]:
    return [{"start": (MONDAY + timedelta(weeks=i)).isoformat(),
             "conversations": conversations, "automatic_resolution_rate": rate,
             "escalation_rate": 1 - rate} for i, rate in enumerate(rates)]


def size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def pixels(png: bytes, colour: str) -> int:
    """How many pixels have `colour` ("#rrggbb")."""
    rgb = imread(io.BytesIO(png), format="png")[..., :3]
    target = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) < 0.02).sum())


def bar_pixels(png: bytes) -> int:
    return pixels(png, BAR)


def test_a_few_weeks_draw_one_bar_each_as_a_png() -> None:
    png = resolution_chart(weeks([0.31, 0.42, 0.58]))
    assert png.startswith(PNG_SIGNATURE)
    assert size(png) == (800, 400)
    # Higher rates, taller bars: more of the bars' colour.
    assert bar_pixels(png) > bar_pixels(resolution_chart(weeks([0.1, 0.1, 0.1]))) > 0


def test_no_conversations_is_a_plain_png_with_no_bars() -> None:
    for empty in ([], weeks([0.0, 0.0], conversations=0)):
        png = resolution_chart(empty)
        assert png.startswith(PNG_SIGNATURE) and size(png) == (800, 400)
        assert bar_pixels(png) == 0


def test_only_the_last_twelve_weeks_are_drawn() -> None:
    thirty = weeks([0.9] * 18 + [0.5] * 12)
    assert resolution_chart(thirty) == resolution_chart(thirty[-12:])


def test_the_week_auto_training_started_is_marked() -> None:
    data = weeks([0.3, 0.4, 0.6])
    assert pixels(resolution_chart(data, activated_at=MONDAY + timedelta(days=9)),
                  ACTIVATED) > 0
    assert pixels(resolution_chart(data), ACTIVATED) == 0
    # Started before the weeks shown: every bar is "after", no line.
    assert pixels(resolution_chart(data, activated_at=MONDAY - timedelta(days=30)),
                  ACTIVATED) == 0
