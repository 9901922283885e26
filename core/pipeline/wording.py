"""Customers' wording made fit for a KB: chit-chat told apart, identifiers found, cleaning."""

from __future__ import annotations

import re

from core.generation.safety import PLACEHOLDERS, redact_identifiers

__all__ = ["clean_question", "has_identifier", "is_chitchat"]

# Words that make up a greeting, a thank-you, a sign-off or small talk, in the languages
# customers most often greet in. A message made of these alone asks nothing.
_CHITCHAT_WORDS = frozenset("""
hi hii hiii hello helo hey heya hiya yo howdy greetings sup there all everyone everybody team
guys folks support anyone anybody someone here good morning afternoon evening day night
thanks thank thx ty tks cheers you so much very lot a many again ok okay k kk oki alright
fine cool great nice perfect awesome got it sure yes yeah yep no nope bye goodbye later see
ya hola buenos buenas dias tardes noches gracias muchas vale adios bonjour salut bonsoir coucou
merci beaucoup bonne journee journée au revoir hallo guten tag morgen abend danke schön schon
sehr tschüss tschuss ciao buongiorno buonasera salve grazie mille arrivederci ola olá oi
obrigado obrigada bom dia tarde hej tack dank je wel goedemorgen please pls plz
""".split())
# Small talk about the bot itself: no topic the KB could answer.
_SMALL_TALK = re.compile(
    r"^(?:are|r) (?:you|u) (?:a |an )?(?:bot|robot|human|real|real person|ai|machine)"
    r"|^(?:is )?(?:any ?(?:one|body)|some ?(?:one|body)) (?:there|here|around)"
    r"|^how are (?:you|u)(?: doing| today)?$|^who are (?:you|u)$|^what'?s up$|^test(?:ing)?$",
    re.IGNORECASE)
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+")
# A greeting (with whom it greets) or a filler at the start of a question.
_LEADING = re.compile(
    r"^(?:\W|_)*(?:(?:hi+|hello|hey|heya|hiya|yo|howdy|greetings|good (?:morning|afternoon|"
    r"evening|day)|dear|hola|bonjour|hallo|ciao|salut|ok(?:ay)?|so|um+|uh+|quick question)"
    r"(?:\s+(?:there|team|all|everyone|guys|folks|support|again))?(?:\W|_)+)+",
    re.IGNORECASE)
# A closing that adds nothing to the question.
_TRAILING = re.compile(
    r"(?:[\s,;.!-]+(?:(?:many |thanks?|thank you|thx|ty|cheers|please|pls|plz|asap|"
    r"in advance|a lot|so much|much appreciated|appreciate it)\W*)+)$",
    re.IGNORECASE)
_FILLER_SENTENCE = re.compile(
    r"^(?:i )?(?:just|only) (?:placed|ordered|bought|made|did|paid)\b.{0,20}$"
    r"|^(?:please|pls|plz) help$|^help(?: me)?(?: please| pls)?$|^asap$|^urgent$"
    r"|^(?:thanks?|thank you|thx|cheers|regards|best|kind regards)\b[\w ,]{0,25}$",
    re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[?!.])\s+")
_PLACEHOLDER_RE = re.compile(
    r"(?:\s+(?:for|on|of|with|from|under|to|re|is|number|no\.?|nr\.?|id|code|#|:))?\s*(?:"
    + "|".join(re.escape(p) for p in PLACEHOLDERS) + r")", re.IGNORECASE)
# A self-introduction goes whole: "my name is [name]," says nothing once the name is out.
_INTRODUCTION = re.compile(r"\b(?:my name is|my name's|name:)\s*\[name\]\W*", re.IGNORECASE)
_QUESTION_START = re.compile(
    r"^(?:how|what|when|where|why|who|whom|which|whose|can|could|do|does|did|is|are|was|were|"
    r"will|would|should|shall|may|might|have|has|am)\b", re.IGNORECASE)
_SLANG = {"u": "you", "ur": "your", "r": "are", "pls": "please", "plz": "please", "i": "I",
          "im": "I'm", "i'm": "I'm", "ive": "I've", "i've": "I've", "id": "I'd", "i'd": "I'd"}


def is_chitchat(text: str) -> bool:
    """True for a greeting, a thank-you, a sign-off or small talk with nothing else in it
    ("hi", "hey there 👋", "thanks!", "ok", "merci beaucoup", "are you a bot?")."""
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if not words:
        return True  # emoji or punctuation only
    if all(w in _CHITCHAT_WORDS for w in words):
        return True
    return bool(_SMALL_TALK.search(" ".join(words)))


def has_identifier(text: str) -> bool:
    """True when `text` carries something that identifies a customer or their case: an order
    number or reference code, an e-mail, a phone, card or account number, an IBAN, a name."""
    return redact_identifiers(text) != text


def clean_question(text: str) -> str:
    """A customer's question as a KB question: identifiers redacted and the words that named
    them dropped, no greeting or sign-off, one question mark, normal spacing and capitals.
    Returns the text as it was when cleaning would leave nothing of it."""
    cleaned = _PLACEHOLDER_RE.sub("", _INTRODUCTION.sub("", redact_identifiers(text)))
    cleaned = " ".join(cleaned.split())
    sentences = [s for s in _SENTENCES.split(cleaned) if s.strip()]
    kept = [s for s in sentences if not is_chitchat(s)
            and not _FILLER_SENTENCE.search(s.strip(" .!?,"))]
    # Greetings and context-free fillers ("just placed it") go; sentences that give the
    # question its topic ("My card has not arrived. What is going on?") stay.
    cleaned = " ".join(kept)
    last = kept[-1].rstrip() if kept else ""
    previous = None
    while previous != cleaned:
        previous = cleaned
        cleaned = _LEADING.sub("", cleaned)
        cleaned = _TRAILING.sub("", cleaned.rstrip(" ?!.,;:"))
    cleaned = cleaned.strip(" ,;:-")
    words = cleaned.split(" ")
    if not cleaned or is_chitchat(cleaned):
        return " ".join(text.split())
    words = [_SLANG.get(w.lower(), w) for w in words]
    cleaned = " ".join(words)
    cleaned = re.sub(r"\s+([,;:])", r"\1", cleaned)
    cleaned = cleaned[0].upper() + cleaned[1:]
    cleaned = re.sub(r"[?!.]+$", "", cleaned)
    if re.search(r"\?[?!.]*$", last) or (not last.endswith((".", "!"))
                              and _QUESTION_START.search(_SENTENCES.split(cleaned)[-1])):
        return cleaned + "?"
    # A statement keeps one full stop when it had closing punctuation.
    return cleaned + ("." if last.endswith((".", "!")) else "")
