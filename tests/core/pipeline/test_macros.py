"""Reply templates: learned from a bot's own replies, taken out, a topic's own answer kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from core.embeddings import Embedder
from core.pipeline.macros import learn
from tests.macro_topics import TOPICS, signature_macro, slot_macro


def _replies(embedder: Embedder, reply_of: dict[str, list[str]]
             ) -> tuple[list[str], np.ndarray]:
    """Each topic's questions, answered in turn with that topic's replies."""
    questions, replies = [], []
    for topic, texts in reply_of.items():
        for i, q in enumerate(TOPICS[topic][0]):
            questions.append(q)
            replies.append(texts[i % len(texts)])
    return replies, embedder.embed(questions)


def test_a_slot_macro_is_taken_out_and_each_topic_keeps_its_words(embedder: Embedder) -> None:
    template = learn(*_replies(embedder, {t: [slot_macro(t)] for t in TOPICS}))
    for topic, (_, body) in TOPICS.items():
        kept = template.distinctive(slot_macro(topic))
        assert "thanks for contacting" not in kept.lower()
        assert "anything else" not in kept.lower()
        assert body.rstrip(".") in kept and topic.replace("_", " ") in kept


def test_a_long_signature_and_a_sentence_every_reply_carries_are_taken_out(
        embedder: Embedder) -> None:
    # Two agents sign; every reply also says the support team is available 24/7.
    template = learn(*_replies(embedder, {t: [signature_macro(t, 0), signature_macro(t, 1)]
                                          for t in TOPICS}))
    for topic, (_, body) in TOPICS.items():
        for agent in (0, 1):
            assert template.distinctive(signature_macro(topic, agent)) == body


@pytest.mark.parametrize("macro", [slot_macro, signature_macro])
def test_replies_compare_by_what_differs_once_the_macro_is_out(
        embedder: Embedder, macro: Callable[[str], str]) -> None:
    # Whole, neighbouring topics' replies look alike through the macro they share; their
    # distinctive parts are told apart by what each topic says.
    template = learn(*_replies(embedder, {t: [macro(t)] for t in TOPICS}))
    for a, b in (("sim_order", "sim_arrival"), ("sim_order", "esim"), ("roaming", "bill")):
        whole = embedder.embed([macro(a), macro(b)])
        parts = embedder.embed([template.distinctive(macro(a)), template.distinctive(macro(b))])
        assert float(parts[0] @ parts[1]) < float(whole[0] @ whole[1]) - 0.1


def test_a_topic_answer_pasted_verbatim_for_each_customer_is_not_template(
        embedder: Embedder) -> None:
    # The porting answer is pasted as it is, or with the customer's name, for every porting
    # customer: it recurs in many replies, but only among one topic's questions.
    porting = TOPICS["port"][1]
    reply_of = {t: [slot_macro(t)] for t in TOPICS if t != "port"}
    reply_of["port"] = [porting, f"Hi Ana, {porting}", f"Hello Ben, {porting}",
                        f"Hi Carla, {porting}"]
    template = learn(*_replies(embedder, reply_of))
    assert template  # the slot macro of the other topics is learned...
    for reply in reply_of["port"]:
        assert porting in template.distinctive(reply)  # ...the porting answer stays whole


def test_one_topic_answered_in_paraphrases_has_no_template(embedder: Embedder) -> None:
    # What a single topic's replies share is that topic's answer: nothing to take out yet.
    replies = ["Hi! To order a physical SIM, open My Plan > SIM and choose Order SIM.",
               "Sure, open My Plan > SIM and choose Order SIM to get a physical SIM.",
               "You can order a physical SIM in My Plan > SIM: choose Order SIM.",
               "Open My Plan > SIM, then Order SIM, and a physical SIM is on its way."]
    template = learn(replies, embedder.embed(TOPICS["sim_order"][0]))
    assert not template
    assert template.distinctive(replies[0]) == replies[0]


def test_a_reply_that_is_all_template_stays_itself(embedder: Embedder) -> None:
    template = learn(*_replies(embedder, {t: [slot_macro(t)] for t in TOPICS}))
    bare = "Hi there, thanks for contacting Telco support!"
    assert template.distinctive(bare) == bare
