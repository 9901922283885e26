"""Stock refusals: the one reply agents give to questions the business does not answer at all.

A desk declines off-topic questions ("who was the first capcom character", "can you book me a
table") with one stock sentence. Such questions are not gaps: they share nothing but the
refusal, and a suggestion for each only costs reviewers a rejection. A canned answer to one
real topic is also a reply given word for word to many customers — what tells the two apart
is the questions behind it: a topic's customers ask alike, a refusal's customers ask about
anything. Both yardsticks come from the bot's own data, so nothing here is tuned to one desk:

- how alike two of this bot's failed questions are, taken at random (the *background*);
- how alike the questions behind one of its canned replies usually are (the *topic level*:
  the upper quartile over its replies given to several questions — most canned replies
  answer one topic).

A reply given to at least `MIN_QUESTIONS` different questions that are *less* alike than
two of the bot's failed questions taken at random is a stock refusal: its customers share
less than the bot's customers at large. (A cut a quarter of the way up to the topic level
took a loosely-phrased real topic, "roaming" asked four very different ways, for a refusal.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# A refusal is recognised once given to this many different questions: two could be chance.
MIN_QUESTIONS = 3
# Replies to several questions needed before the topic level can be read off the bot's data.
MIN_GROUPS = 4
# Where between the background (0) and the topic level (1) the cut lies: at the background
# itself. Measured here: off-topic questions 0.07, one loosely-phrased topic 0.37, the bot's
# failed questions at random 0.28, its topics' canned replies 0.58-0.77.
CUT = 0.0
# The topic level must stand clearly above the background for the comparison to mean
# anything (a bot whose canned replies are all given to unrelated questions has no topics
# to compare with).
MIN_SPREAD = 0.05

_WORD = re.compile(r"[^\W_]+")


def reply_key(text: str) -> str:
    """The reply as agents mean it: case, spacing, punctuation and emoji aside."""
    return " ".join(_WORD.findall(text.lower()))


def coherence(vectors: np.ndarray) -> float:
    """Mean cosine between two different rows of unit vectors (1: all alike)."""
    n = len(vectors)
    if n < 2:
        return 1.0
    total = vectors.sum(axis=0)
    return float((total @ total - float(np.einsum("ij,ij->", vectors, vectors))) / (n * (n - 1)))


@dataclass(frozen=True)
class Refusals:
    """What the bot's data says: the stock refusals, and the yardsticks that found them."""

    keys: frozenset[str]
    background: float | None
    topic_level: float | None
    cut: float | None


def stock_refusals(groups: dict[str, np.ndarray], background: np.ndarray) -> Refusals:
    """The reply keys in `groups` (reply key → unit vectors of the distinct questions it was
    given to) that are stock refusals, judged against `background` (unit vectors of a sample
    of the bot's failed questions)."""
    sized = {k: v for k, v in groups.items() if len(v) >= MIN_QUESTIONS}
    if len(sized) < MIN_GROUPS or len(background) < 2 * MIN_QUESTIONS:
        return Refusals(frozenset(), None, None, None)
    levels = {k: coherence(v) for k, v in sized.items()}
    base = coherence(background)
    top = float(np.percentile(list(levels.values()), 75))
    if top - base < MIN_SPREAD:
        return Refusals(frozenset(), base, top, None)
    cut = base + CUT * (top - base)
    return Refusals(frozenset(k for k, level in levels.items() if level < cut), base, top, cut)
