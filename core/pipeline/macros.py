"""Agents' reply templates (canned macros): learn a bot's boilerplate and take it out of replies.

Agents paste canned macros: a greeting, a signature, links, legal text, a sentence with a
fill-in slot, numbered steps shared by several procedures. Embedded whole, replies to
different topics then look alike, and gaps that compare agents' replies mix neighbouring
topics. What tells topics apart is what differs between replies, so replies are compared by
their *distinctive* part: the reply without the words the bot's agents use whatever the topic.

The template is learned from the bot's own data, never from a list of phrases:

- the unit is a **distinct reply text**, not an occurrence: a topic's canned answer pasted
  verbatim for thousands of customers is one text, so it is never mistaken for boilerplate;
- a word trigram is a template candidate when at least MIN_SHARED distinct replies contain it
  (trigrams catch a template of any shape: whole sentences, a signature, the frame around a
  fill-in slot, shared steps);
- a candidate is template only when the replies containing it answer questions of different
  topics: the customers' questions behind those replies are about as spread as the bot's
  questions at large, not as close as one reply's own questions are. Both reference points
  come from the bot's data (`learn`), so no threshold is tied to a domain or an embedding
  model's scale; a topic's own answer, reworded or personalised by agents ("Hi Ana, ..."),
  recurs among one topic's questions and is kept.

A word of a reply is template when most of the trigrams around it are; the distinctive part
is what remains, in the reply's own words (the reply itself when nothing remains).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N = 3
# Fewer distinct replies than this sharing a trigram is chance, not a template.
MIN_SHARED = 3
# Questions that got different replies must be less alike than this share of how alike those
# that got one same reply are before the data shows distinct topics, and so a template.
TOPICS_SEEN = 0.75
# What a reply must keep of its own around a template: a few words (a topic's name, a fact).
OWN_WORDS = 3
_WORD = re.compile(r"\w+(?:['’]\w+)*")
# A sentence end, a colon or semicolon, or a line break ends a segment.
_SEGMENT = re.compile(r"[^.!?:;\n]+")

Feature = tuple[str, ...]


def _segments(text: str) -> tuple[list[re.Match[str]], list[list[int]]]:
    """The words of `text`, and the segments (sentences, clauses before a colon, lines) as
    lists of word indexes."""
    words: list[re.Match[str]] = []
    segments: list[list[int]] = []
    for seg in _SEGMENT.finditer(text):
        found = list(_WORD.finditer(text, seg.start(), seg.end()))
        if found:
            segments.append(list(range(len(words), len(words) + len(found))))
            words += found
    return words, segments


def _keys(text: str) -> tuple[tuple[str, ...], ...]:
    """The lower-cased words of each segment of `text` (what `learn` compares texts by)."""
    return tuple(k for k in (tuple(_WORD.findall(seg)) for seg in _SEGMENT.findall(text.lower()))
                 if k)


def _features(keys: Sequence[str]) -> list[Feature]:
    """What one segment contributes to a template: itself whole (a greeting, a name line of a
    signature) and its word trigrams (the frame around a fill-in slot, a shared step)."""
    return [("", *keys)] + [tuple(keys[i:i + N]) for i in range(len(keys) - N + 1)]


def _kept(segments: Sequence[Sequence[str]], features: frozenset[Feature] | set[Feature]
          ) -> list[list[bool]]:
    """For each word of each segment, whether it stays once `features` are taken out: a
    segment that is a feature whole goes, and a word goes when most of the segment's trigrams
    around it are features."""
    out: list[list[bool]] = []
    for keys in segments:
        if ("", *keys) in features:
            out.append([False] * len(keys))
            continue
        hits = [tuple(keys[j:j + N]) in features for j in range(len(keys) - N + 1)]
        if not hits:
            out.append([True] * len(keys))
            continue
        # Most of the trigrams around a word decide: a topic word next to the frame of a
        # fill-in slot ("about card arrival and") shares one trigram with the frame and the
        # others with the topic, so it stays.
        out.append([2 * sum(hits[max(0, k - N + 1):min(k, len(hits) - 1) + 1])
                    <= len(hits[max(0, k - N + 1):min(k, len(hits) - 1) + 1])
                    for k in range(len(keys))])
    return out


@dataclass(frozen=True)
class Template:
    """The segments and word trigrams a bot's agents use whatever the topic."""

    features: frozenset[Feature] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.features)

    def distinctive(self, text: str) -> str:
        """`text` without its template: a segment that is template whole goes, and in the
        others a word goes when most of the segment's trigrams around it are template; what
        remains keeps the reply's own words and punctuation. The reply itself when the
        template covers all of it (there is nothing else to compare it by)."""
        if not self.features:
            return text
        words, segments = _segments(text)
        masks = _kept([[words[i].group().lower() for i in seg] for seg in segments],
                      self.features)
        keep = [k for mask in masks for k in mask]
        runs: list[str] = []
        start: int | None = None
        for i, kept in enumerate([*keep, False]):
            if kept and start is None:
                start = i
            elif not kept and start is not None:
                end = words[i - 1].end()
                # The run's closing punctuation ("... sign up.") belongs to it.
                while end < len(text) and not text[end].isspace() and not text[end].isalnum():
                    end += 1
                runs.append(text[words[start].start():end])
                start = None
        return " ".join(runs) if runs else text


def _between(sums: np.ndarray, counts: np.ndarray, squares: np.ndarray) -> float:
    """Mean cosine between questions that got different replies, for a set of distinct
    replies given as their question vectors' sums, counts and sums' squared lengths."""
    total = sums.sum(axis=0)
    pairs = float(counts.sum() ** 2 - (counts ** 2).sum())
    return float(total @ total - squares.sum()) / pairs if pairs > 0 else 1.0


def learn(replies: Sequence[str], questions: np.ndarray) -> Template:
    """The template of a bot's replies: `replies[i]` is an agent's reply to the customer
    question whose unit vector is `questions[i]` (one row per occurrence; repeats are fine).

    Two references come from the data: how alike the questions that got one same reply text
    are (*within*: the median, over replies given to several questions, of their mean
    pairwise cosine) and how alike questions that got different replies are (*between*).
    A segment or trigram shared by MIN_SHARED or more distinct replies is template when the
    questions behind those replies are, across replies, less alike than the midpoint of the
    two: it goes with replies to any topic. While *between* is over TOPICS_SEEN of *within*
    the data shows no distinct topics yet (one topic, paraphrased), and nothing is template:
    what a topic's replies share is then its own answer. Without replies given to several
    questions, *within* is taken halfway between *between* and identical questions."""
    if len(replies) == 0:
        return Template()
    index: dict[tuple[tuple[str, ...], ...], int] = {}
    sums: list[np.ndarray] = []
    counts: list[int] = []
    for text, q in zip(replies, questions, strict=True):
        key = _keys(text)
        if not key:
            continue
        d = index.setdefault(key, len(index))
        if d == len(sums):
            sums.append(np.zeros(len(q), dtype=np.float64))
            counts.append(0)
        sums[d] += q
        counts[d] += 1
    if len(index) < MIN_SHARED:
        return Template()
    s = np.stack(sums)
    n = np.asarray(counts, dtype=np.float64)
    sq = (s * s).sum(axis=1)
    between = _between(s, n, sq)
    several = n >= 2
    within = float(np.median((sq[several] - n[several]) / (n[several] * (n[several] - 1)))) \
        if several.any() else (1.0 + between) / 2
    if between > TOPICS_SEEN * within:
        return Template()
    cut = (between + within) / 2
    containing: dict[Feature, list[int]] = defaultdict(list)
    for key, d in index.items():
        found: set[Feature] = set()
        for seg_keys in key:
            found.update(_features(seg_keys))
        for f in found:
            containing[f].append(d)
    groups: dict[tuple[int, ...], list[Feature]] = defaultdict(list)
    for f, ds in containing.items():
        if len(ds) >= MIN_SHARED:
            groups[tuple(ds)].append(f)
    spread = {g: fs for g, fs in groups.items()
              if _between(s[list(g)], n[list(g)], sq[list(g)]) < cut}
    features = {f for fs in spread.values() for f in fs}
    # A template is a frame around each reply's own content: text whose removal leaves most
    # of its replies with almost nothing (a topic's answer with only greetings or names
    # around it, when replies given to one same question are too few to tell the topic) is
    # that content, not a frame.
    keys = list(index)
    left = [sum(sum(mask) for mask in _kept(key, features)) for key in keys]
    framed = {g: fs for g, fs in spread.items()
              if 2 * sum(left[d] >= OWN_WORDS for d in g) > len(g)}
    return Template(frozenset(f for fs in framed.values() for f in fs))
