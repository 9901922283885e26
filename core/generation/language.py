"""Which language customers and agents write in, offline (py3langid: a 4 MB model, ~0.1 ms a text).

The model loads once per process (~0.5-0.8 s; `warm_up()` starts that in the background) and
is restricted to the languages a
support desk commonly sees: on a short question ("tracking number pls") the full 97-language
model often picks an unlikely language, and a wrong guess here would mean a wrong warning.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from functools import lru_cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

__all__ = ["LANGUAGE_NAMES", "detect_language", "language_name", "warm_up"]

LANGUAGE_NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay", "nb": "Norwegian",
    "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish",
    "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese",
    "zh": "Chinese",
}
# Below this probability (normalised over the languages above) the text says too little.
MIN_CONFIDENCE = 0.5
# Enough text for a confident guess; more only costs time.
MAX_CHARS = 2000

_identifier: LanguageIdentifier | None = None
_lock = threading.Lock()
# Links, e-mail addresses, numbers and order codes carry no language and skew short texts.
_NOISE = re.compile(r"\S+@\S+|https?://\S+|www\.\S+|\S*\d\S*")


def _model() -> LanguageIdentifier:
    global _identifier
    with _lock:
        if _identifier is None:
            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            ident.set_languages([code for code in LANGUAGE_NAMES if code in ident.labels])
            _identifier = ident
        return _identifier


def warm_up() -> None:
    """Load the model in the background, so the first cycle does not wait for it."""
    if _identifier is None:
        threading.Thread(target=_model, name="langid-load", daemon=True).start()


def detect_language(texts: Sequence[str]) -> str | None:
    """The ISO 639-1 code of the language most of `texts` are in, or None when they are too
    short or mixed to tell. The texts are read together: one short question says little,
    a gap's worth of them says enough."""
    joined = ""
    for text in texts:
        cleaned = " ".join(_NOISE.sub(" ", text or "").split())
        if cleaned:
            joined += cleaned + "\n"
        if len(joined) >= MAX_CHARS:
            break
    return _detect(joined[:MAX_CHARS])


@lru_cache(maxsize=8192)
def _detect(text: str) -> str | None:
    # Cached: a gap's questions and replies come back every cycle while it stays open.
    if not re.search(r"[^\W\d_]{2,}", text):
        return None
    code, probability = _model().classify(text)
    return code if probability >= MIN_CONFIDENCE else None


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(code or "", code or "an unknown language")
