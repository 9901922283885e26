"""Learning from the agents: a question an agent answered with an entry's answer is recognised
as that entry's after the next cycle, without a reviewer; a reviewer's rejection undoes it."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from core.models import LearnedPhrasing, utcnow
from core.policy.commands import CreateEntry, RejectReason
from core.services import Services
from core.status import SuggestionKind
from tests.gap_world import REVIEWER, GapWorld

PASSWORD = "How do I reset my password?"
PASSWORD_ANSWER = ("Tap 'Forgot password' on the sign-in screen and follow the link we e-mail "
                   "you; it is valid for 30 minutes.")
REFUND = "When will I get my refund?"
REFUND_ANSWER = ("Refunds go back to your original payment method within 5 working days of "
                 "the return reaching our warehouse.")
DELIVERY = "How long does delivery take?"
DELIVERY_ANSWER = "Standard delivery takes 2 to 4 working days; express arrives the next day."
# Asked in words far from the entry's one question: the bot does not recognise it.
LOCKED_OUT = "the sign in page keeps rejecting me and now I am locked out of the app"


def _world(services: Services, **settings: object) -> tuple[GapWorld, dict[str, str]]:
    world = GapWorld(services)
    if settings:
        world.settings(**settings)
    created = services.policy.create_entries([
        CreateEntry(bot_id=world.bot_id, question=q, answer=a, actor=REVIEWER)
        for q, a in ((PASSWORD, PASSWORD_ANSWER), (REFUND, REFUND_ANSWER),
                     (DELIVERY, DELIVERY_ANSWER))])
    return world, {"password": created[0]["id"], "refund": created[1]["id"],
                   "delivery": created[2]["id"]}


def _answer(services: Services, question: str) -> str | None:
    got = services.answer(bot=services.review.bot("shop"), question=question)
    return None if got.escalate else got.entry_id


def _learned(services: Services) -> list[LearnedPhrasing]:
    with Session(services.engine) as session:
        return list(session.exec(select(LearnedPhrasing)))


def test_a_question_an_agent_answered_with_an_entrys_answer_is_then_answered_by_it(
        services: Services) -> None:
    world, ids = _world(services)
    assert _answer(services, LOCKED_OUT) is None  # escalates: nobody taught the bot yet
    now = utcnow()
    # The agent pastes the entry's answer, personalised with a greeting.
    world.escalate("locked", [LOCKED_OUT], [f"Hi Ana! {PASSWORD_ANSWER}"],
                   now - timedelta(hours=1))
    result = world.cycle(now)

    assert result.phrasings_learned == 1
    assert _answer(services, LOCKED_OUT) == ids["password"]
    # Nothing a customer sees changed: the entry's triggers are the reviewed ones only.
    assert services.review.entry(ids["password"], bot=services.review.bot("shop")).variants \
        == []


def test_replies_that_restate_no_single_answer_teach_nothing(services: Services) -> None:
    world, _ = _world(services)
    now = utcnow()
    world.escalate("decline", ["who won the football last night"],
                   ["Sorry, I can only help with questions about your orders."],
                   now - timedelta(hours=2))
    # Written by the agent in their own words: about the topic, but not the entry's answer.
    world.escalate("own", [LOCKED_OUT], [
        "Looks like the app blocked you after several attempts; I have unlocked your "
        "profile, so please try signing in again now."], now - timedelta(hours=1))
    result = world.cycle(now)

    assert result.phrasings_learned == 0 and _learned(services) == []
    assert _answer(services, LOCKED_OUT) is None


def test_what_is_learned_carries_no_identifier_or_greeting(services: Services) -> None:
    world, ids = _world(services)
    now = utcnow()
    asked = ("hi there, my email is ana.lopez@example.com and my refund for order VC-2184266 "
             "still has not shown up on my card")
    world.escalate("refund", [asked], [REFUND_ANSWER], now - timedelta(hours=1))
    world.escalate("hello", ["hello?"], [REFUND_ANSWER], now - timedelta(hours=1))
    world.cycle(now)

    [row] = _learned(services)
    assert row.entry_id == ids["refund"]
    for identifier in ("ana", "example.com", "VC-", "2184266", "hi there", "["):
        assert identifier not in row.text.lower(), row.text
    assert "refund" in row.text.lower()


def test_learning_can_be_turned_off(services: Services) -> None:
    world, _ = _world(services, learn_from_agents=False)
    now = utcnow()
    world.escalate("locked", [LOCKED_OUT], [PASSWORD_ANSWER], now - timedelta(hours=1))
    result = world.cycle(now)

    assert result.phrasings_learned == 0
    assert _answer(services, LOCKED_OUT) is None


def test_rejecting_the_phrasing_for_that_entry_unlearns_it_for_good(
        services: Services) -> None:
    world, ids = _world(services)
    now = utcnow()
    world.escalate("locked", [LOCKED_OUT], [PASSWORD_ANSWER], now - timedelta(hours=2))
    world.cycle(now - timedelta(hours=1))
    assert _answer(services, LOCKED_OUT) == ids["password"]
    [sug] = [s for s in world.open_suggestions() if s.entry_id == ids["password"]]
    assert sug.kind == SuggestionKind.add_variants

    world.reject(sug, RejectReason.wrong_information)
    assert _answer(services, LOCKED_OUT) is None
    # The agents keep pasting that answer to the same question: the reviewer's word stands.
    world.escalate("again", [LOCKED_OUT], [PASSWORD_ANSWER], now - timedelta(minutes=30))
    world.cycle(now)
    assert _answer(services, LOCKED_OUT) is None
    assert services.index_sync.reconcile(bot_id=world.bot_id)["in_sync"]
