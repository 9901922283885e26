"""Topic categories for knowledge-base suggestions, so sensitive ones are never auto-published."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.embeddings import Embedder

__all__ = [
    "BUILTIN_CATEGORIES",
    "BUILTIN_CATEGORY_NAMES",
    "Category",
    "CategoryClassifier",
    "CategoryMatch",
]


@dataclass(frozen=True)
class Category:
    """A topic whose suggestions a person must review before customers see them."""

    name: str  # lowercase, e.g. "pricing"
    description: str
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()  # example customer questions
    builtin: bool = False


@dataclass(frozen=True)
class CategoryMatch:
    """The category assigned to one suggestion, and why, for the reviewer."""

    name: str
    score: float  # 0..1
    keywords: tuple[str, ...]  # the category's keywords found in the text (may be empty)
    why: str  # one short sentence a reviewer can read


# -- built-in categories -----------------------------------------------------------------------
#
# Keywords are chosen to be unambiguous in customer-support text, because a single hit is
# enough to hold a suggestion back: "charge" (a phone), "tablet" (a device), "condition"
# (terms and conditions), "plan" (a travel plan), "supplement" (a single-room supplement),
# "treatment" (a spa treatment) and "court" (a tennis court) are left out on purpose and left
# to the embedding. Examples are worded differently from
# the labelled questions in tests/core/policy/test_categories.py so the measured figures are honest.

PRICING = Category(
    name="pricing",
    description=(
        "Questions about prices, costs, fees, charges, discounts, refunds, billing, invoices, "
        "subscriptions, taxes and how much customers pay."
    ),
    keywords=(
        "price", "pricing", "cost", "fee", "charge for", "how much is", "refund", "discount",
        "bill", "invoice", "subscription", "surcharge", "overcharged", "coupon", "promo code",
        "voucher", "tax", "VAT", "money back", "reimburse", "cheap", "expensive",
        "interest rate", "exchange rate", "commission", "free trial", "chargeback",
        "late payment", "pay extra",
    ),
    examples=(
        "What does the monthly subscription cost?",
        "How much do I have to pay for it?",
        "Are there any hidden fees or extra charges?",
        "Do you offer a student or volume discount?",
        "When will I get my money back?",
        "Why was I charged twice?",
        "Is VAT included in the price?",
        "Is the annual plan cheaper than paying monthly?",
        "Is there a charge for cancelling?",
        "When will I be billed for my renewal?",
        "Is there a less expensive option?",
        "What interest rate or commission do you charge?",
    ),
    builtin=True,
)

LEGAL = Category(
    name="legal",
    description=(
        "Questions about terms and conditions, contracts, liability, warranties, privacy law, "
        "GDPR and personal data, disputes, complaints, compliance and legal rights."
    ),
    keywords=(
        "terms and conditions", "terms of service", "terms of use", "user agreement",
        "contract", "liability", "liable", "GDPR", "HIPAA", "privacy policy", "privacy law",
        "data protection", "personal data", "third parties", "lawsuit", "lawyer", "legal",
        "legal action", "law", "sue", "dispute", "compliance", "regulation", "warranty",
        "copyright", "trademark", "licence agreement", "license agreement", "jurisdiction",
        "data breach",
    ),
    examples=(
        "Where can I read the terms that apply to me?",
        "Who is responsible if the product causes damage?",
        "How do you handle my personal information under privacy law?",
        "Can I ask you to erase everything you store about me?",
        "Is the agreement legally binding?",
        "What guarantee rights do I have by law?",
        "How do I raise a formal complaint or dispute?",
        "Do you follow data protection rules?",
        "Am I allowed to use your content commercially?",
        "Which country's law governs our agreement?",
    ),
    builtin=True,
)

MEDICAL = Category(
    name="medical",
    description=(
        "Questions about health, symptoms, medication, dosage, side effects, diagnosis, "
        "treatment, pregnancy, allergies and whether something is safe to take."
    ),
    keywords=(
        "symptom", "medication", "medicine", "medical", "dose", "dosage", "overdose",
        "diagnosis", "pregnant", "pregnancy", "breastfeeding", "allergy", "allergic",
        "side effect", "prescription", "doctor", "ibuprofen", "paracetamol", "antibiotic",
        "painkiller", "pill", "vaccine", "rash", "fever", "infection", "blood pressure",
        "diabetes", "diabetic", "disease", "surgery",
    ),
    examples=(
        "What are the side effects of these pills?",
        "How many capsules can I take in one day?",
        "Is it safe to use while nursing my baby?",
        "Could this product cause a reaction on sensitive skin?",
        "Should I see a doctor about how I've been feeling?",
        "Can I take it together with my heart medication?",
        "Is this remedy suitable for young children?",
        "What should I do if I accidentally took too much?",
        "I'm allergic to nuts, is this safe for me?",
        "Can you explain what my test results mean?",
    ),
    builtin=True,
)

# Everyday support questions that are none of the built-in topics. A question closer to one of
# these than to any built-in example is not pricing, legal or medical however high its raw
# similarity: without them, "how do I track my order" sits as close to the pricing examples
# (order, card, booking) as real pricing questions do. They say nothing about an admin's own
# categories, which they may well overlap (a "shipping" category), so they only compete with
# the built-ins.
_GENERAL_EXAMPLES: tuple[str, ...] = (
    "How do I log in to my account?",
    "I forgot my username",
    "How do I change my email address?",
    "When will my order arrive?",
    "My package hasn't been delivered yet",
    "Can I change my order after placing it?",
    "Do you deliver on weekends?",
    "Is this product available in other colours?",
    "How do I install the update?",
    "The website is not loading",
    "How do I delete a file from my folder?",
    "Can I share a document with my team?",
    "How do I enable notifications?",
    "Can I move my flight to another date?",
    "What time is breakfast served at the hotel?",
    "Where is the meeting point for the tour?",
    "How do I print my boarding pass?",
    "How do I cancel my appointment?",
    "How do I connect my device to wifi?",
    "How do I move money between my own accounts?",
    "How do I freeze my card?",
    "Where can I see my recent transactions?",
    "How do I contact customer support?",
    "Do you have a mobile app?",
)

BUILTIN_CATEGORIES: tuple[Category, ...] = (PRICING, LEGAL, MEDICAL)
BUILTIN_CATEGORY_NAMES: frozenset[str] = frozenset(c.name for c in BUILTIN_CATEGORIES)

# -- thresholds --------------------------------------------------------------------------------
#
# Picked on the labelled set in tests/core/policy/test_categories.py (generic support questions from
# software, retail, travel, health and finance); the figures measured there are in its
# docstring. Cosines are all-MiniLM-L6-v2's; another embedder would need its own.

EMBEDDING_BAR = 0.32
"""Embedding evidence alone assigns a category when a question is at least this close to one of
its examples (cosine) and closer to them than to any known general question."""

DESCRIPTION_BAR = 0.35
"""The same for a category with no examples (its description and keywords stand in for them).
On three sample custom topics (shipping, account security, cancellations) true questions
averaged 0.41-0.46 and everyday ones reached at most 0.33."""

ANSWER_WEIGHT = 0.85
"""An answer is weaker evidence than the question: it may mention a topic in passing."""

CORRECTION_OVERRIDE = 0.85
"""A question this close to one an admin corrected takes that correction's label outright."""

QUESTION_KEYWORD_SCORE = 0.80
ANSWER_KEYWORD_SCORE = 0.65
KEYWORD_STEP = 0.05  # each further distinct keyword adds this much, so more hits rank first


# -- keywords ----------------------------------------------------------------------------------

_VOWELS = frozenset("aeiou")
_SUFFIXES = ("s", "es", "ed", "ing", "er", "ers", "est", "ly", "able", "ment")
# Mechanical inflections that are other, everyday words: "fee" → "feed" (a news feed),
# "charge for" → "charger for", "rash" → "rasher" (of bacon).
_FALSE_FORMS = frozenset({"feed", "charger", "chargers", "rasher", "rashers"})


def _word_forms(word: str) -> set[str]:
    """The simple English inflections of one word: refund → refunds, refunded, refundable…"""
    w = word.lower()
    forms = {w} | {w + suffix for suffix in _SUFFIXES}
    if w.endswith("e"):
        forms |= {w + "d", w + "r", w + "rs", w[:-1] + "ing", w[:-1] + "able"}
    if len(w) > 2 and w.endswith("y") and w[-2] not in _VOWELS:
        forms |= {w[:-1] + "ies", w[:-1] + "ied"}
    if (len(w) >= 3 and w[-1] not in _VOWELS and w[-1] not in "wxy"
            and w[-2] in _VOWELS and w[-3] not in _VOWELS):
        # A short final syllable doubles its consonant: ship → shipped, shipping.
        forms |= {w + w[-1] + suffix for suffix in ("ed", "ing", "er", "ers")}
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        forms.add(w[:-1])  # a keyword given as a plural still matches the singular
    return forms - (_FALSE_FORMS - {w})


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # Every word may be inflected ("side effects"), and words may be split by any whitespace
    # or a hyphen ("side-effects"). Lookarounds rather than \b, so a keyword that starts or
    # ends with a symbol still matches as a whole word.
    words = [
        "(?:" + "|".join(sorted(map(re.escape, _word_forms(w)), key=len, reverse=True)) + ")"
        for w in keyword.split()
    ]
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join(words) + r"(?!\w)", re.IGNORECASE)


# An amount of money ("$12", "€9.99", "25 EUR", "40 dollars") is pricing however it is worded:
# an answer quoting one is exactly what must not go out unreviewed. "pounds" is left out, as
# it is as often a weight ("bags up to 50 pounds").
_AMOUNT = re.compile(
    r"[$£€¥₹]\s?\d[\d,.]*"
    r"|(?<![\w.,])\d[\d,.]*\s?(?:EUR|USD|GBP|CHF|CAD|AUD|INR|JPY|euros?|dollars?)(?!\w)",
    re.IGNORECASE)
_AMOUNT_CATEGORY = "pricing"


def _amounts(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.group(0).strip() for m in _AMOUNT.finditer(text)))


def _quoted(keywords: Sequence[str]) -> str:
    quoted = [f'"{k}"' for k in keywords[:3]]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# -- the classifier ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Evidence:
    """What speaks for one category on one suggestion."""

    category: Category
    question_keywords: tuple[str, ...]
    answer_keywords: tuple[str, ...]
    amounts: tuple[str, ...]  # sums of money quoted anywhere; only ever set for pricing
    similarity: float  # best cosine to the category's prototypes (the answer's down-weighted)
    rival: float  # the same to known general questions, which must be beaten
    bar: float

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.question_keywords + self.answer_keywords))

    @property
    def keyword_score(self) -> float:
        if self.question_keywords:
            base = QUESTION_KEYWORD_SCORE
        elif self.answer_keywords or self.amounts:
            base = ANSWER_KEYWORD_SCORE
        else:
            return 0.0
        hits = len(self.keywords) + (1 if self.amounts else 0)
        return min(0.95, base + KEYWORD_STEP * (hits - 1))

    @property
    def embedding_score(self) -> float:
        close = self.similarity >= self.bar and self.similarity > self.rival
        return min(self.similarity, 1.0) if close else 0.0

    @property
    def score(self) -> float:
        return max(self.keyword_score, self.embedding_score)


class CategoryClassifier:
    """Assigns at most one category to a suggestion from keywords, embeddings and corrections.

    Prototypes (each category's examples, or its description and keywords when it has none),
    the general questions and the corrections are embedded once, here; each classification
    then costs one embed call for its own texts.
    """

    def __init__(self, embedder: Embedder, categories: Sequence[Category],
                 corrections: Sequence[tuple[str, str | None]] = ()) -> None:
        names = [c.name.strip().lower() for c in categories]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"category names must be unique; repeated: {', '.join(repeated)}")
        self.embedder = embedder
        self.categories: tuple[Category, ...] = tuple(categories)
        index = {name: i for i, name in enumerate(names)}
        self._patterns = [[(k, _keyword_pattern(k)) for k in c.keywords if k.strip()]
                          for c in self.categories]
        # A correction naming a category that no longer exists is dropped: "this is X" cannot
        # be honoured any more, and relabelling it as anything else would be a guess.
        self._corrections: list[tuple[str, int | None]] = [
            (text, None if label is None else index[label.strip().lower()])
            for text, label in corrections
            if text.strip() and (label is None or label.strip().lower() in index)
        ]

        texts: list[str] = []
        owners: list[int] = []
        self._bars: list[float] = []
        for i, category in enumerate(self.categories):
            prototypes = [e for e in category.examples if e.strip()]
            self._bars.append(EMBEDDING_BAR if prototypes else DESCRIPTION_BAR)
            if not prototypes:
                # The keywords as one text add a second, differently worded view of the topic;
                # on a few custom categories it lifted the closest true question by ~0.04.
                prototypes = [category.description.strip() or category.name]
                if category.keywords:
                    prototypes.append(", ".join(category.keywords))
            texts += prototypes
            owners += [i] * len(prototypes)
        general = list(_GENERAL_EXAMPLES) if any(c.builtin for c in self.categories) else []
        vectors = embedder.embed(
            texts + general + [text for text, _ in self._corrections])
        n_proto, n_general = len(texts), len(general)
        self._correction_vectors = vectors[n_proto + n_general:]
        # Corrections are also labelled examples: a question merely similar to a corrected one
        # (not near-identical enough to take its label outright) leans the same way.
        labelled = [j for j, (_, label) in enumerate(self._corrections) if label is not None]
        unlabelled = [j for j, (_, label) in enumerate(self._corrections) if label is None]
        self._prototypes = np.vstack([vectors[:n_proto], self._correction_vectors[labelled]])
        self._owners = np.asarray(
            owners + [self._corrections[j][1] for j in labelled], dtype=np.int64)
        self._builtin_general = vectors[n_proto: n_proto + n_general]
        self._admin_general = self._correction_vectors[unlabelled]

    def classify(self, *, question: str, answer: str,
                 phrasings: Sequence[str] = ()) -> CategoryMatch | None:
        """The category a suggestion belongs to, or None when it is general."""
        return self.classify_many([(question, answer, phrasings)])[0]

    def classify_many(
            self, items: Sequence[tuple[str, str, Sequence[str]]]) -> list[CategoryMatch | None]:
        """classify() for many (question, answer, phrasings), embedding all texts in one call."""
        texts: list[str] = []
        rows: list[tuple[list[int], int | None]] = []
        for question, answer, phrasings in items:
            asked = [t for t in (question, *phrasings) if t.strip()]
            rows.append((list(range(len(texts), len(texts) + len(asked))),
                         len(texts) + len(asked) if answer.strip() else None))
            texts += asked + ([answer] if answer.strip() else [])
        vectors = self.embedder.embed(texts) if texts else np.empty((0, 0), dtype=np.float32)
        return [
            self._decide(asked_texts=[t for t in (question, *phrasings) if t.strip()],
                         answer=answer, asked=vectors[asked_rows],
                         answered=None if answer_row is None else vectors[answer_row][None, :])
            for (question, answer, phrasings), (asked_rows, answer_row) in zip(
                items, rows, strict=True)
        ]

    def _decide(self, *, asked_texts: list[str], answer: str, asked: np.ndarray,
                answered: np.ndarray | None) -> CategoryMatch | None:
        corrected = self._corrected(asked)
        if corrected is not None:
            label, similarity = corrected
            if label is None:
                return None
            name = self.categories[label].name
            return CategoryMatch(
                name=name, score=round(similarity, 3), keywords=(),
                why=f"an admin filed a near-identical question under {name} ({similarity:.2f})")

        per_category = self._best_per_category(asked, answered)
        admin_general = self._closest(self._admin_general, asked, answered)
        builtin_general = max(admin_general,
                              self._closest(self._builtin_general, asked, answered))
        evidence = [
            _Evidence(
                category=category,
                question_keywords=tuple(dict.fromkeys(
                    k for text in asked_texts for k, p in patterns if p.search(text))),
                answer_keywords=tuple(k for k, p in patterns if p.search(answer)),
                amounts=(_amounts(" ".join([*asked_texts, answer]))
                         if category.name == _AMOUNT_CATEGORY else ()),
                similarity=float(per_category[i]),
                rival=builtin_general if category.builtin else admin_general,
                bar=self._bars[i],
            )
            for i, (category, patterns) in enumerate(
                zip(self.categories, self._patterns, strict=True))
        ]
        best = max(evidence, key=lambda e: (e.score, len(e.keywords), e.similarity),
                   default=None)
        if best is None or best.score <= 0.0:
            return None
        if best.keyword_score >= best.embedding_score and best.keywords:
            where = "" if best.question_keywords else " in the answer"
            why = f"mentions {_quoted(best.keywords)}{where}"
        elif best.keyword_score >= best.embedding_score:
            why = f"quotes an amount of money ({_quoted(best.amounts)})"
        else:
            why = f"close to {best.category.name} questions ({best.similarity:.2f})"
        return CategoryMatch(name=best.category.name, score=round(best.score, 3),
                             keywords=best.keywords, why=why)

    def _corrected(self, asked: np.ndarray) -> tuple[int | None, float] | None:
        """The label of the corrected question nearest to what was asked, if near enough."""
        if not self._corrections or not len(asked):
            return None
        similarities = (asked @ self._correction_vectors.T).max(axis=0)
        nearest = int(np.argmax(similarities))
        if similarities[nearest] < CORRECTION_OVERRIDE:
            return None
        return self._corrections[nearest][1], float(similarities[nearest])

    def _similarities(self, vectors: np.ndarray, asked: np.ndarray,
                      answered: np.ndarray | None) -> np.ndarray:
        """Per row of `vectors`: its best cosine to an asked text or (down-weighted) the answer."""
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        if len(asked):
            best = np.maximum(best, (asked @ vectors.T).max(axis=0))
        if answered is not None:
            best = np.maximum(best, ANSWER_WEIGHT * (answered @ vectors.T).max(axis=0))
        return best

    def _closest(self, vectors: np.ndarray, asked: np.ndarray,
                 answered: np.ndarray | None) -> float:
        if not len(vectors):
            return -1.0
        return float(self._similarities(vectors, asked, answered).max())

    def _best_per_category(self, asked: np.ndarray, answered: np.ndarray | None) -> np.ndarray:
        best = np.full(len(self.categories), -1.0, dtype=np.float32)
        if len(self._prototypes):
            np.maximum.at(best, self._owners, self._similarities(self._prototypes, asked, answered))
        return best
