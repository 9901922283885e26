"""Learning from the agents: a question an agent answered with an entry's answer is recognised
as that entry's after the next cycle, without a reviewer; a reviewer's rejection undoes it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from core.conversations import ConversationIn, store_conversations
from core.db import session_scope
from core.models import LearnedPhrasing, utcnow
from core.policy.commands import CreateEntry, RejectReason, UpdateSettings
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
    """What was learned for entries (not what was learned as nobody's)."""
    with Session(services.engine) as session:
        return [r for r in session.exec(select(LearnedPhrasing)) if r.entry_id is not None]


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


def test_replies_that_restate_no_answer_never_teach_the_bot_to_answer(
        services: Services) -> None:
    world, _ = _world(services)
    now = utcnow()
    world.escalate("decline", ["who won the football last night"],
                   ["Sorry, I can only help with questions about your orders."],
                   now - timedelta(hours=2))
    # The agent solved it another way than the entry's answer: the KB does not say this.
    world.escalate("own", [LOCKED_OUT], [
        "Looks like the app blocked you after several attempts; I have unlocked your "
        "profile, so please try signing in again now."], now - timedelta(hours=1))
    # The refund entry's answer in the agent's own words: like it, but not a copy of it.
    world.escalate("reworded", ["where is my money for the jacket I sent back"], [
        "Your money goes back to the card you paid with, usually within five working days "
        "after the return gets to us."], now - timedelta(hours=1))
    result = world.cycle(now)

    assert _learned(services) == []
    assert _answer(services, LOCKED_OUT) is None
    # The first two are nobody's now (near them the bot hands over); the reworded answer
    # says neither, so its question is not learned at all.
    assert result.phrasings_learned == 2
    health = services.review.index_health(services.review.bot("shop"))
    assert health["nobody_phrasings"] == 2 and health["learned_phrasings"] == 0


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


CANADA = ["how long does delivery to Canada take?", "How long does delivery take to Canada?"]
NO_CANADA = "Sorry, we only ship within the EU for now; Canada is not on our list yet."


def _answered_wrongly(cid: str, question: str, entry_id: str, agent_reply: str,
                      at: datetime) -> ConversationIn:
    """The bot answers with an entry, the customer says it does not help, an agent replies."""
    step = timedelta(seconds=20)
    return ConversationIn.model_validate({
        "id": cid, "started_at": at.isoformat(),
        "messages": [
            {"role": "customer", "text": question, "at": at.isoformat()},
            {"role": "bot", "text": DELIVERY_ANSWER, "entry_id": entry_id,
             "at": (at + step).isoformat()},
            {"role": "customer", "text": "that doesn't answer my question",
             "at": (at + 2 * step).isoformat()},
            {"role": "agent", "text": agent_reply, "at": (at + 10 * step).isoformat()}],
        "feedback": [{"message_index": 1, "rating": "down"}]})


def test_questions_the_agents_answered_with_what_no_entry_says_are_handed_over(
        services: Services) -> None:
    world, ids = _world(services)
    # The nearest entry is a confident wrong answer: delivery times, but not to Canada.
    assert [_answer(services, q) for q in CANADA] == [ids["delivery"]] * 2
    now = utcnow()
    with session_scope(services.engine) as session:
        store_conversations(session, bot_id=world.bot_id, conversations=[
            _answered_wrongly(f"ca-{i}", q, ids["delivery"], NO_CANADA,
                              now - timedelta(hours=2)) for i, q in enumerate(CANADA)])
    world.cycle(now - timedelta(hours=1))

    assert [_answer(services, q) for q in CANADA] == [None, None]
    assert _answer(services, DELIVERY) == ids["delivery"]  # its own customers still answered
    health = services.review.index_health(services.review.bot("shop"))
    assert health["nobody_phrasings"] == 2 and health["in_sync"]

    # A reviewer gives those questions an answer: it is served at once, not handed over.
    [sug] = [s for s in world.open_suggestions() if s.kind == SuggestionKind.new_answer]
    canada = world.approve(sug)
    assert [_answer(services, q) for q in CANADA] == [canada, canada]
    assert services.review.index_health(services.review.bot("shop"))["nobody_phrasings"] == 0


def test_turning_learning_off_takes_what_was_learned_out_of_the_answers_at_once(
        services: Services) -> None:
    world, ids = _world(services)
    now = utcnow()
    world.escalate("locked", [LOCKED_OUT], [PASSWORD_ANSWER], now - timedelta(hours=1))
    world.cycle(now)
    assert _answer(services, LOCKED_OUT) == ids["password"]

    bot = services.review.bot("shop")
    services.policy.update_settings(UpdateSettings(
        bot_id=bot.id, patch={"learn_from_agents": False}, actor=REVIEWER))
    assert _answer(services, LOCKED_OUT) is None
    assert services.index_sync.reconcile(bot_id=bot.id)["in_sync"]
    services.policy.update_settings(UpdateSettings(
        bot_id=bot.id, patch={"learn_from_agents": True}, actor=REVIEWER))
    assert _answer(services, LOCKED_OUT) == ids["password"]
