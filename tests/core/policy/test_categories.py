"""Topic categories: sensitive suggestions (pricing, legal, medical, an admin's own topics) are
held back for review, everyday support questions are not, and admins' corrections stick.

Measured on the labelled sets below with the offline all-MiniLM-L6-v2, question only (no answer
or phrasings), EMBEDDING_BAR 0.32, DESCRIPTION_BAR 0.35:

    set                                  questions  precision  recall         general flagged
    TUNING    (thresholds picked on it)      97       1.00     0.92 (46/50)    0/47
    SECOND    (written after a 1st pass)     52       0.93     0.88 (28/32)    2/20
    HELD_OUT  (written last, never tuned)    42       1.00     0.88 (23/26)    0/16
    all                                     191       0.98     0.90 (97/108)   2/83

    embedding evidence alone (keywords removed), all: precision 0.97, recall 0.82 (88/108)

precision = right category / any category given; recall = right category / sensitive questions.
The two general questions flagged: "where can I download the invoice template" (keyword
"invoice") and "how do I add a payee" (0.35 from a pricing example).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.embeddings import Embedder
from core.policy.categories import (
    BUILTIN_CATEGORIES,
    BUILTIN_CATEGORY_NAMES,
    Category,
    CategoryClassifier,
    CategoryMatch,
)
from tests.helpers import CountingEmbedder

Label = str | None

# Generic support questions from software, retail, travel, health and finance products, written
# for this file (none from banking77). Built-in examples are worded differently on purpose.
TUNING: list[tuple[str, Label]] = [
    ("how much does the premium plan cost", "pricing"),
    ("is there a fee for international transfers", "pricing"),
    ("can I get a refund", "pricing"),
    ("do you offer discounts for non-profits", "pricing"),
    ("why is my bill higher this month", "pricing"),
    ("how much is a checked bag", "pricing"),
    ("are taxes included in the room rate", "pricing"),
    ("do I pay extra to choose a window seat", "pricing"),
    ("how much is a consultation with the nutritionist", "pricing"),
    ("is there a monthly maintenance charge on the current account", "pricing"),
    ("what will I pay when my membership renews", "pricing"),
    ("what interest do I earn on the savings account", "pricing"),
    ("will I lose money if I cancel my hotel booking", "pricing"),
    ("is there a cheaper plan for students", "pricing"),
    ("I was charged for an order I never received", "pricing"),
    ("how much is shipping to Canada", "pricing"),
    ("do you do a family rate for the gym", "pricing"),
    ("is the upgrade to business class worth the money, what does it run", "pricing"),
    ("what are your terms and conditions", "legal"),
    ("is my data shared with third parties under GDPR", "legal"),
    ("who owns the copyright to content I upload", "legal"),
    ("can I take you to court if my flight is cancelled", "legal"),
    ("do you sign a data processing agreement with business customers", "legal"),
    ("what happens legally if I end my lease early", "legal"),
    ("is the contract automatically renewed", "legal"),
    ("where is your privacy policy", "legal"),
    ("are you HIPAA compliant", "legal"),
    ("which law governs your user agreement", "legal"),
    ("can I transfer my software licence to someone else", "legal"),
    ("what am I entitled to by law if my order arrives damaged", "legal"),
    ("do you sell my personal information to advertisers", "legal"),
    ("can I request a copy of all the information you hold on me", "legal"),
    ("who is responsible if my luggage is lost", "legal"),
    ("do I need to accept the new user agreement to keep using the app", "legal"),
    ("can I take this supplement while pregnant", "medical"),
    ("what dose of ibuprofen is safe", "medical"),
    ("I got a rash after using the cream, what should I do", "medical"),
    ("can children take this medicine", "medical"),
    ("does this medication interact with alcohol", "medical"),
    ("is it normal to feel dizzy after the jab", "medical"),
    ("I'm allergic to penicillin, can I use this", "medical"),
    ("my heart rate on the tracker is very high, is that dangerous", "medical"),
    ("can I exercise after my knee operation", "medical"),
    ("how long should I keep taking the antibiotics", "medical"),
    ("is this protein shake ok for someone with kidney disease", "medical"),
    ("can I drink coffee with these sleeping pills", "medical"),
    ("my child has a high temperature, should I give her anything", "medical"),
    ("does the herbal tea help with headaches", "medical"),
    ("is it safe to fly at 34 weeks", "medical"),
    ("the eye drops sting a lot, is that normal", "medical"),
    ("how do I reset my password", None),
    ("the app crashes when I open settings", None),
    ("how do I export my projects to CSV", None),
    ("can I add another user to my workspace", None),
    ("how do I turn on dark mode", None),
    ("why is sync so slow", None),
    ("how do I connect the Google Calendar integration", None),
    ("where do I find my API key", None),
    ("I can't log in with two-factor authentication", None),
    ("how do I uninstall the desktop app", None),
    ("can I use the app offline", None),
    ("where is my parcel", None),
    ("can I change my delivery address", None),
    ("what sizes does this jacket come in", None),
    ("how do I track my order", None),
    ("is this item back in stock", None),
    ("can I collect my order from a store", None),
    ("what are your store opening hours", None),
    ("does the blender come with a recipe book", None),
    ("can I gift wrap my order", None),
    ("how do I charge my wireless headphones", None),
    ("is the sofa available in blue", None),
    ("can I change my seat", None),
    ("what time does check-in open", None),
    ("how much luggage can I bring", None),
    ("where do I pick up the rental car", None),
    ("can I bring my dog on the train", None),
    ("how early should I arrive at the airport", None),
    ("does the hotel have parking", None),
    ("how do I add my frequent flyer number", None),
    ("is there wifi on board", None),
    ("can I change the name on my booking", None),
    ("how do I book an appointment online", None),
    ("can I reschedule my appointment", None),
    ("how do I pair my fitness tracker with my phone", None),
    ("how do I update my contact details in the patient portal", None),
    ("what are the pharmacy's opening hours", None),
    ("how do I download my step history", None),
    ("the gym app won't show my class bookings", None),
    ("how do I order a new debit card", None),
    ("how do I set up a regular payment to my landlord", None),
    ("can I rename my savings pot", None),
    ("where can I find my account number", None),
    ("how do I activate online banking", None),
    ("how do I update my phone number", None),
    ("my card is stuck in the cash machine", None),
    ("can I open a joint account", None),
]

# Written after the first tuning pass showed which wordings the examples missed; two fixes
# (examples that leaned on "order"/"booking"/"add", plus a few keywords) came from it.
SECOND: list[tuple[str, Label]] = [
    ("what's the price of the pro version", "pricing"),
    ("do you charge for delivery", "pricing"),
    ("why did my monthly payment go up", "pricing"),
    ("are there any student deals", "pricing"),
    ("how much will it be to extend my stay by one night", "pricing"),
    ("I want my money returned for the broken kettle", "pricing"),
    ("is the yoga class free for members or do I need to pay", "pricing"),
    ("what are the charges for using my card abroad", "pricing"),
    ("how much do I owe on my loan", "pricing"),
    ("can I pay in instalments", "pricing"),
    ("does the gold tier come with a lower rate", "pricing"),
    ("what is the penalty for early withdrawal", "pricing"),
    ("do you have a privacy notice I can read", "legal"),
    ("can I opt out of my data being used for marketing", "legal"),
    ("what are my rights if the holiday company goes bust", "legal"),
    ("is the non-compete clause in my agreement enforceable", "legal"),
    ("are you allowed to record my calls", "legal"),
    ("do I have to sign anything before the rental starts", "legal"),
    ("who is accountable if the software loses my files", "legal"),
    ("how long do you keep my records before deleting them", "legal"),
    ("is it legal to resell tickets I bought from you", "legal"),
    ("can I cancel within 14 days under consumer law", "legal"),
    ("can I give this cough syrup to my toddler", "medical"),
    ("I feel nauseous after taking the tablets", "medical"),
    ("is this sunscreen safe if I have eczema", "medical"),
    ("what's the recommended amount of vitamin D per day", "medical"),
    ("can diabetics eat this snack bar", "medical"),
    ("should I stop using the inhaler if my chest hurts", "medical"),
    ("my stitches look red and swollen", "medical"),
    ("is it ok to take melatonin every night", "medical"),
    ("does this face cream contain anything harmful during pregnancy", "medical"),
    ("how soon after the flu shot can I donate blood", "medical"),
    ("how do I change my profile picture", None),
    ("the page keeps showing an error 500", None),
    ("can I merge two accounts", None),
    ("where can I download the invoice template", None),
    ("what colours does the phone case come in", None),
    ("my order arrived with a missing item", None),
    ("do you ship to Northern Ireland", None),
    ("how do I cancel my order", None),
    ("can I upgrade my room to a sea view", None),
    ("what time is the last train back", None),
    ("is the museum wheelchair accessible", None),
    ("can I bring a stroller on the plane", None),
    ("how do I log my water intake in the app", None),
    ("can I see the same physiotherapist next time", None),
    ("how do I find a clinic near me", None),
    ("how do I close my credit card", None),
    ("what's my sort code", None),
    ("how do I add a payee", None),
    ("why was my transfer declined", None),
    ("how do I enable notifications for large purchases", None),
]

# Written once the thresholds and examples were final and measured once; nothing was changed
# after seeing its results.
HELD_OUT: list[tuple[str, Label]] = [
    ("what does the family subscription cost per month", "pricing"),
    ("will I be charged if I miss my appointment", "pricing"),
    ("do you give a discount on bulk orders", "pricing"),
    ("how much is the deposit for the apartment", "pricing"),
    ("can I get reimbursed for the taxi after my flight was diverted", "pricing"),
    ("is the spa included or does it cost extra", "pricing"),
    ("what's the cheapest way to send money to India", "pricing"),
    ("why has my premium gone up", "pricing"),
    ("how do refunds work for digital downloads", "pricing"),
    ("is there a setup fee", "pricing"),
    ("what happens to my personal data if I close my account", "legal"),
    ("do your terms allow me to use the photos on my blog", "legal"),
    ("am I bound by the contract if the service never worked", "legal"),
    ("can I make a claim against you for the delay", "legal"),
    ("is the extended warranty required by law", "legal"),
    ("do you comply with the accessibility regulations", "legal"),
    ("can my employer see my data", "legal"),
    ("what's your policy on cookies and tracking", "legal"),
    ("is it safe to take two paracetamol with a cold and flu drink", "medical"),
    ("I think I'm having a reaction to the new shampoo", "medical"),
    ("can I use the sauna if I have high blood pressure", "medical"),
    ("what should I eat to lower my cholesterol", "medical"),
    ("is this hand cream ok for a newborn", "medical"),
    ("my back hurts after using the rowing machine, should I keep going", "medical"),
    ("can I drink alcohol while on this course of tablets", "medical"),
    ("is the gluten-free bread safe for coeliacs", "medical"),
    ("how do I sign out on all devices", None),
    ("can I print from my phone", None),
    ("why doesn't the search find my old messages", None),
    ("do you have this dress in a size 12", None),
    ("my parcel says delivered but it isn't here", None),
    ("can I swap the colour of my order", None),
    ("is there a lift in the hotel", None),
    ("where do I meet the tour guide", None),
    ("can I take my bike on the ferry", None),
    ("how do I connect the scale to the app", None),
    ("can I book a video call with my physio", None),
    ("how do I see my past workouts", None),
    ("how do I change my PIN", None),
    ("where is the nearest branch", None),
    ("how do I turn on contactless", None),
    ("can I get a paper statement", None),
]

SHIPPING = Category(
    name="shipping",
    description="Questions about delivery times, shipping options, couriers and tracking parcels.",
    keywords=("shipping", "courier", "parcel", "tracking number"),
)




@pytest.fixture(scope="module")
def classifier(embedder: Embedder) -> CategoryClassifier:
    return CategoryClassifier(embedder, BUILTIN_CATEGORIES)


def category_of(classifier: CategoryClassifier, question: str, answer: str = "") -> str | None:
    match = classifier.classify(question=question, answer=answer)
    return match.name if match else None


def precision_recall(classifier: CategoryClassifier,
                     labelled: list[tuple[str, Label]]) -> tuple[float, float]:
    got = classifier.classify_many([(q, "", ()) for q, _ in labelled])
    predicted = [m.name if m else None for m in got]
    given = [(p, want) for p, (_, want) in zip(predicted, labelled, strict=True) if p]
    right = sum(p == want for p, want in given)
    sensitive = sum(want is not None for _, want in labelled)
    return right / len(given), right / sensitive


# -- built-ins ---------------------------------------------------------------------------------


def test_builtins_are_pricing_legal_medical_with_keywords_and_examples() -> None:
    assert [c.name for c in BUILTIN_CATEGORIES] == ["pricing", "legal", "medical"]
    assert frozenset({"pricing", "legal", "medical"}) == BUILTIN_CATEGORY_NAMES
    for category in BUILTIN_CATEGORIES:
        assert category.builtin and category.description
        assert 15 <= len(category.keywords) <= 30, category.name
        assert len(category.examples) >= 10, category.name


@pytest.mark.parametrize(("question", "category"), [
    ("how much does the premium plan cost", "pricing"),
    ("is there a fee for international transfers", "pricing"),
    ("can I get a refund", "pricing"),
    ("what are your terms and conditions", "legal"),
    ("is my data shared with third parties under GDPR", "legal"),
    ("can I take this supplement while pregnant", "medical"),
    ("what dose of ibuprofen is safe", "medical"),
    # no keyword in these: the embedding alone has to recognise the topic
    ("what will I pay when my membership renews", "pricing"),
    ("do you sell my personal information to advertisers", "legal"),
    ("my child has a high temperature, should I give her anything", "medical"),
])
def test_clearly_sensitive_questions_get_their_category(
        classifier: CategoryClassifier, question: str, category: str) -> None:
    assert category_of(classifier, question) == category


@pytest.mark.parametrize("question", [
    "how do I reset my password",
    "where is my parcel",
    "can I change my delivery address",
    "how do I track my order",
    "how much luggage can I bring",
    "how do I charge my wireless headphones",
    "what are the pharmacy's opening hours",
    "how do I order a new debit card",
])
def test_everyday_questions_get_no_category(classifier: CategoryClassifier,
                                            question: str) -> None:
    assert classifier.classify(question=question, answer="") is None


def test_labelled_support_questions_are_classified_precisely_and_with_high_recall(
        classifier: CategoryClassifier) -> None:
    # Floors a little under the figures in the module docstring, so a real regression fails.
    precision, recall = precision_recall(classifier, TUNING + SECOND + HELD_OUT)
    assert precision >= 0.95 and recall >= 0.88, (precision, recall)
    precision, recall = precision_recall(classifier, HELD_OUT)
    assert precision >= 0.95 and recall >= 0.84, (precision, recall)


def test_answer_keywords_and_quoted_prices_count(classifier: CategoryClassifier) -> None:
    # The question is harmless; what the answer promises is not.
    upgrade = classifier.classify(
        question="can I upgrade my room",
        answer="Upgrades depend on availability; reception will give you the price at check-in.")
    assert upgrade is not None and upgrade.name == "pricing"
    assert upgrade.why == 'mentions "price" in the answer'
    bag = classifier.classify(question="can I add a second bag",
                              answer="Yes, a second checked bag is €25 when added online.")
    assert bag is not None and bag.name == "pricing" and "€25" in bag.why
    assert classifier.classify(
        question="how do I reset my password",
        answer="Go to Settings > Security and choose Reset password; the link lasts 24 hours.",
    ) is None


def test_a_keyword_in_a_phrasing_counts(classifier: CategoryClassifier) -> None:
    match = classifier.classify(question="can I cancel and get it back", answer="",
                                phrasings=["cancel and refund my order"])
    assert match is not None and match.name == "pricing" and match.keywords == ("refund",)


# -- keywords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "category", "keyword"), [
    ("I was only refunded half of what I paid", "pricing", "refund"),
    ("are these tickets refundable", "pricing", "refund"),
    ("the fees went up again", "pricing", "fee"),
    ("what did you change in the Terms of Service", "legal", "terms of service"),
    ("can I be sued for a bad review", "legal", "sue"),
    ("does it have side-effects", "medical", "side effect"),
    ("I've been diagnosed with an allergy to latex", "medical", "allergy"),
])
def test_keywords_match_inflected_and_multi_word(classifier: CategoryClassifier, question: str,
                                                 category: str, keyword: str) -> None:
    match = classifier.classify(question=question, answer="")
    assert match is not None and match.name == category
    assert keyword in match.keywords
    assert f'"{keyword}"' in match.why


@pytest.mark.parametrize("question", [
    "my news feed is empty",  # "fee" → "feed" is another word
    "can I book a taxi from the airport",  # "tax" only as a whole word
    "do you sell a charger for this phone",  # "charge for" → "charger for"
])
def test_keywords_do_not_match_inside_other_words(classifier: CategoryClassifier,
                                                  question: str) -> None:
    assert classifier.classify(question=question, answer="") is None


def test_why_names_the_matched_keywords(classifier: CategoryClassifier) -> None:
    match = classifier.classify(question="is there a fee if I ask for a refund", answer="")
    assert isinstance(match, CategoryMatch)
    assert (match.name, match.keywords, match.why) == (
        "pricing", ("fee", "refund"), 'mentions "fee" and "refund"')
    assert 0.0 < match.score <= 1.0
    close = classifier.classify(question="what will I pay when my membership renews", answer="")
    assert close is not None and close.keywords == ()
    assert close.why.startswith("close to pricing questions (0.")


# -- custom categories -------------------------------------------------------------------------


def test_a_custom_category_is_recognised_next_to_the_builtins(embedder: Embedder) -> None:
    classifier = CategoryClassifier(embedder, [*BUILTIN_CATEGORIES, SHIPPING])
    courier = classifier.classify(question="which couriers do you use", answer="")
    assert courier is not None and courier.name == "shipping" and courier.keywords == ("courier",)
    # no keyword: recognised from the description alone
    assert category_of(classifier, "how long does delivery take") == "shipping"
    assert category_of(classifier, "can I get next day delivery") == "shipping"
    assert category_of(classifier, "can I get a refund") == "pricing"
    assert category_of(classifier, "how do I reset my password") is None
    assert category_of(classifier, "what sizes does this jacket come in") is None


def test_category_names_must_be_unique(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="pricing"):
        CategoryClassifier(embedder, [*BUILTIN_CATEGORIES,
                                      Category(name="pricing", description="Our prices.")])


# -- corrections -------------------------------------------------------------------------------


def test_a_correction_decides_near_identical_questions_only(embedder: Embedder,
                                                           classifier: CategoryClassifier) -> None:
    missed = "do you do a family rate for the gym"
    flagged = "where can I download the invoice template"
    assert category_of(classifier, missed) is None
    assert category_of(classifier, flagged) == "pricing"

    corrected = CategoryClassifier(embedder, BUILTIN_CATEGORIES,
                                   corrections=[(missed, "pricing"), (flagged, None)])
    later = corrected.classify(question="Do you have a family rate for the gym?", answer="")
    assert later is not None and later.name == "pricing"
    assert "admin" in later.why
    assert category_of(corrected, "where do I download the invoice template?") is None
    # unrelated questions keep their category
    assert category_of(corrected, "can I get a refund") == "pricing"
    assert category_of(corrected, "where can I download my latest invoice") == "pricing"
    assert category_of(corrected, "how do I reset my password") is None
    assert category_of(corrected, "what dose of ibuprofen is safe") == "medical"


def test_a_correction_to_a_deleted_category_is_ignored(embedder: Embedder) -> None:
    classifier = CategoryClassifier(embedder, BUILTIN_CATEGORIES,
                                    corrections=[("which courier do you use", "shipping")])
    assert category_of(classifier, "which courier do you use") is None


# -- batch -------------------------------------------------------------------------------------


def test_classify_many_equals_one_by_one_in_one_embed_call(embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    classifier = CategoryClassifier(counting, [*BUILTIN_CATEGORIES, SHIPPING],
                                    corrections=[("do you do a family rate for the gym",
                                                  "pricing")])
    items: list[tuple[str, str, Sequence[str]]] = [
        ("can I get a refund", "Yes, within 30 days.", ()),
        ("how do I reset my password", "Use the Forgot password link.", ["password reset"]),
        ("which courier do you use", "", ()),
        ("is it safe while breastfeeding", "Please ask your pharmacist.", ["nursing mothers"]),
        ("do you do a family rate for the gym?", "", ()),
        ("can I upgrade my room", "Reception will give you the price.", ()),
        ("", "", ()),
    ]
    counting.calls.clear()
    batch = classifier.classify_many(items)
    assert len(counting.calls) == 1
    one_by_one = [classifier.classify(question=q, answer=a, phrasings=p) for q, a, p in items]
    assert batch == one_by_one
    assert [m.name if m else None for m in batch] == [
        "pricing", None, "shipping", "medical", "pricing", "pricing", None]
    counting.calls.clear()
    assert classifier.classify_many([]) == []
    assert counting.calls == []
