"""How the bot's answers sound (length, greeting, contractions, "!", emoji), and matching it.

`learn_tone(kb_answers)` reads the bot's existing answers; the offline generator then
matches a draft to it with these rules, each applied only when the answers show a clear habit:

- length: the typical answer is the median words and sentences of the answers (3 answers or
  more, a greeting not counted). A draft longer than 1.5x the median words, or with more than
  twice the median sentences (at least the median + 1), is trimmed by the generator (least
  supported sentences first, never the core one);
- greeting: when at least half of the answers open with a bare greeting sentence ("Hi!",
  "Hi there!"), the draft opens with the bot's most common one; otherwise it has none;
- contractions: 70% or more of the answers' contractable forms contracted ("don't",
  "we'll") → agent sentences are contracted; 30% or fewer → spelled out ("do not",
  "we will"); in between (or fewer than 3 forms seen) → left as the agents wrote them.
  Only forms with one reading are touched ("'d" is never expanded, "it is" is contracted only
  before another word: "Yes, it is." stays);
- "!": answers that never use one (3 answers or more) → a sentence-final "!" becomes ".";
- emoji: answers that never use one (3 answers or more) → emoji are removed.

Nothing here adds words of its own: a greeting comes from the bot's own answers, and
contraction changes only respell what is there.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Tone",
    "apply_style",
    "contract",
    "expand",
    "join_sentences",
    "learn_tone",
    "split_sentences",
    "strip_emoji",
    "word_count",
]

# Habits need this many answers before the bot is said to "never" do something.
MIN_ANSWERS = 3
GREETING_SHARE = 0.5
CONTRACTED = 0.7
SPELLED_OUT = 0.3
MIN_FORMS = 3
LONG_WORDS = 1.5

# -- sentences -------------------------------------------------------------------------------

_EMOJI = (
    "\U0001F000-\U0001FAFF"  # pictographs, emoticons, transport, flags, supplemental symbols
    "\u2600-\u27BF"          # misc symbols and dingbats (☀, ✅, ✨, ❤)
    "\u2B00-\u2BFF"          # arrows and stars (⭐)
    "\uFE0F\u200D"           # variation selector, zero-width joiner
)
_EMOJI_RE = re.compile(f"[{_EMOJI}]+")
# A sentence ends at . ! ? … (plus closing quotes/brackets) followed by space, or at an emoji
# followed by space; the next one starts with a capital, a digit, an opening quote or bracket.
_BOUNDARY = re.compile(
    rf"(?:(?<=[.!?…])|(?<=[.!?…][\"”’')\]])|(?<=[{_EMOJI}]))[ \t]+|[ \t]*\n\s*"
)
_NEXT_START = re.compile(r"(?:[-–—~]+\s*)?[\"“'(¿¡]*[A-Z0-9À-ÖØ-Þ\u0400-\u042F]")
_ABBREVIATIONS = frozenset("e.g i.e vs approx mr mrs ms dr incl excl dept cf a.m p.m".split())
_LIST_MARKER = re.compile(r"(?:^|\n)\s*(?:\d{1,2}|[a-zA-Z])[.)]$")


def split_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, separator that followed it) pairs; joining them gives back `text` exactly
    (minus surrounding whitespace). Line breaks always end a sentence."""
    text = text.strip()
    out: list[tuple[str, str]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        chunk = text[start:m.start()]
        if not chunk.strip():
            continue
        newline = "\n" in m.group()
        if not newline:
            if not _NEXT_START.match(text, m.end()):
                continue
            last = chunk.split()[-1].lower()
            if last.endswith(".") and (last.rstrip(".") in _ABBREVIATIONS or (
                    len(last) == 2 and last[0].isalpha()) or _LIST_MARKER.search(chunk)):
                continue
        out.append((chunk, m.group()))
        start = m.end()
    if start < len(text):
        out.append((text[start:], ""))
    return out


def join_sentences(parts: Sequence[tuple[str, str]]) -> str:
    """The inverse of split_sentences: sentences with their separators (the last one's
    dropped); a sentence that runs into the next on the same line without closing punctuation
    gets a "."."""
    pieces: list[str] = []
    for i, (sentence, sep) in enumerate(parts):
        last = i == len(parts) - 1
        if not last and "\n" not in sep and not re.search(rf"[.!?…:;\"”’')\]{_EMOJI}]$", sentence):
            sentence += "."
        pieces.append(sentence if last else sentence + (sep or " "))
    return "".join(pieces)


def word_count(text: str) -> int:
    return len(re.findall(r"\w+(?:['’]\w+)?", text))


def strip_emoji(text: str) -> str:
    stripped = _EMOJI_RE.sub("", text)
    if stripped == text:
        return text
    stripped = re.sub(r"[ \t]{2,}", " ", stripped)
    return re.sub(r"[ \t]+([.!?,;:])", r"\1", stripped).strip()


# -- contractions ----------------------------------------------------------------------------

_NEGATIVES = {
    "don't": "do not", "doesn't": "does not", "didn't": "did not", "can't": "cannot",
    "won't": "will not", "isn't": "is not", "aren't": "are not", "wasn't": "was not",
    "weren't": "were not", "haven't": "have not", "hasn't": "has not", "hadn't": "had not",
    "wouldn't": "would not", "shouldn't": "should not", "couldn't": "could not",
    "mustn't": "must not",
}
_PRONOUNS = {
    "i'm": "I am", "you're": "you are", "we're": "we are", "they're": "they are",
    "i'll": "I will", "you'll": "you will", "we'll": "we will", "they'll": "they will",
    "it'll": "it will", "that'll": "that will", "i've": "I have", "you've": "you have",
    "we've": "we have", "they've": "they have",
}
_IS = {"it's": "it", "that's": "that", "there's": "there", "here's": "here", "what's": "what"}
_CONTRACTION_RE = re.compile(
    r"\b(" + "|".join(re.escape(k).replace("'", "['’]")
                      for k in [*_NEGATIVES, *_PRONOUNS, *_IS]) + r")\b(\s+\w+)?",
    re.IGNORECASE,
)
# Full forms that may be contracted: only before another word, and only those with one
# contracted spelling ("I have a question" must not become "I've a question"). Negatives go
# first so "we will not" becomes "we won't", not "we'll not".
_FULL_NEGATIVES = {v: k for k, v in _NEGATIVES.items()}
_FULL_PRONOUNS = {v.lower(): k for k, v in _PRONOUNS.items() if not v.endswith(" have")} | {
    f"{v} is": k for k, v in _IS.items()}


def _full_re(forms: dict[str, str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(f).replace(r"\ ", r"\s+")
                            for f in sorted(forms, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})\b(?=\s+[A-Za-z])", re.IGNORECASE)


_FULL_NEGATIVES_RE = _full_re(_FULL_NEGATIVES)
_FULL_PRONOUNS_RE = _full_re(_FULL_PRONOUNS)
_HAS_WORDS = frozenset({"been", "got", "gotten", "had"})


def _same_case(original: str, replacement: str) -> str:
    if original[:1].isupper() and not replacement.startswith("I "):
        return replacement[:1].upper() + replacement[1:]
    return replacement


def expand(text: str) -> str:
    """Spell contractions out ("don't" → "do not", "it's been" → "it has been")."""
    def replace(m: re.Match[str]) -> str:
        word, after = m.group(1), m.group(2) or ""
        key = word.lower().replace("’", "'")
        if key in _NEGATIVES:
            full = _NEGATIVES[key]
        elif key in _PRONOUNS:
            full = _PRONOUNS[key]
        else:
            verb = "has" if after.strip().lower() in _HAS_WORDS else "is"
            full = f"{_IS[key]} {verb}"
        return _same_case(word, full) + after
    return _CONTRACTION_RE.sub(replace, text)


def contract(text: str) -> str:
    """Contract full forms that have one contracted spelling ("do not" → "don't")."""
    def replacer(forms: dict[str, str]) -> Callable[[re.Match[str]], str]:
        def replace(m: re.Match[str]) -> str:
            full = m.group(1)
            short = forms[" ".join(full.lower().split())]
            short = "I" + short[1:] if short.startswith("i'") else short
            return _same_case(full, short)
        return replace
    text = _FULL_NEGATIVES_RE.sub(replacer(_FULL_NEGATIVES), text)
    return _FULL_PRONOUNS_RE.sub(replacer(_FULL_PRONOUNS), text)


def _contraction_counts(text: str) -> tuple[int, int]:
    contracted = len(_CONTRACTION_RE.findall(text))
    full = len(_FULL_NEGATIVES_RE.findall(text)) + len(_FULL_PRONOUNS_RE.findall(text))
    return contracted, full


# -- the bot's tone --------------------------------------------------------------------------

_GREETING_RE = re.compile(
    r"(?i:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening))"
    r"(?i:\s+(?:there|again|all|everyone|friend))?\s*[!.,]*"
)


@dataclass(frozen=True)
class Tone:
    """What the bot's answers typically look like (None: no clear habit)."""

    words: int | None = None
    sentences: int | None = None
    greeting: str | None = None
    contractions: bool | None = None
    exclamations: bool = True
    emoji: bool = True

    @property
    def max_words(self) -> int | None:
        return None if self.words is None else max(1, round(self.words * LONG_WORDS))

    @property
    def max_sentences(self) -> int | None:
        return None if self.sentences is None else max(self.sentences + 1,
                                                        2 * self.sentences)


def learn_tone(kb_answers: Sequence[str]) -> Tone:
    """The tone of the bot's answers (see the module docstring for the rules)."""
    return _learn(tuple(a.strip() for a in kb_answers if a and a.strip()))


@lru_cache(maxsize=1024)
def _learn(answers: tuple[str, ...]) -> Tone:
    if not answers:
        return Tone()
    split = [split_sentences(a) for a in answers]
    openings = [strip_emoji(parts[0][0]) for parts in split if parts]
    greetings = [o for o in openings if _GREETING_RE.fullmatch(o)]
    greeting = None
    if len(greetings) >= max(1, GREETING_SHARE * len(answers)):
        greeting = Counter(greetings).most_common(1)[0][0]
    contracted = full = 0
    for a in answers:
        c, f = _contraction_counts(a)
        contracted, full = contracted + c, full + f
    contractions: bool | None = None
    if contracted + full >= MIN_FORMS:
        share = contracted / (contracted + full)
        contractions = True if share >= CONTRACTED else False if share <= SPELLED_OUT else None
    enough = len(answers) >= MIN_ANSWERS
    # Length is the body's: a greeting the generator adds is not counted against it.
    bodies = [parts[1:] if parts and is_greeting(parts[0][0]) else parts for parts in split]
    return Tone(
        words=round(statistics.median(sum(word_count(s) for s, _ in b) for b in bodies))
        if enough else None,
        sentences=round(statistics.median(len(b) for b in bodies)) if enough else None,
        greeting=greeting,
        contractions=contractions,
        exclamations=not enough or any("!" in a for a in answers),
        emoji=not enough or any(_EMOJI_RE.search(a) for a in answers),
    )


def is_greeting(sentence: str) -> bool:
    return bool(_GREETING_RE.fullmatch(strip_emoji(sentence)))


def apply_style(sentence: str, tone: Tone) -> str:
    """One agent sentence respelled the bot's way: contractions, "!", emoji."""
    if tone.contractions is True:
        sentence = contract(sentence)
    elif tone.contractions is False:
        sentence = expand(sentence)
    if not tone.emoji:
        stripped = strip_emoji(sentence)
        if stripped != sentence and _EMOJI_RE.search(sentence.rstrip()[-1:]) \
                and not re.search(r"[.!?…:;\"”’')\]]$", stripped):
            stripped += "."  # the emoji was what ended the sentence
        sentence = stripped
    if not tone.exclamations:
        sentence = re.sub(r"!+(?=[\"”’')\]]*$)", ".", sentence)
    return sentence
