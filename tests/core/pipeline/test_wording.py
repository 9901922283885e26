"""Customers' wording cleaned for a KB: greetings are no questions, identifiers never stay."""

from __future__ import annotations

import pytest

from core.pipeline.signals import is_substantive
from core.pipeline.wording import clean_question, has_identifier, is_chitchat


@pytest.mark.parametrize("text", [
    "hi", "hello?", "thanks!", "ok", "hey there 👋", "are you a bot?", "hola", "bonjour",
    "danke schön", "merci beaucoup", "muchas gracias", "ciao", "good morning team", "👋👋",
    "is anyone there?"])
def test_greetings_thanks_and_small_talk_are_chitchat_and_no_question(text: str) -> None:
    assert is_chitchat(text)
    assert not is_substantive(text)


@pytest.mark.parametrize("text", [
    "hi where is my order", "Can I pay with card?", "bonjour, livrez-vous en Belgique ?",
    "thanks, but how do I return shoes?"])
def test_a_question_with_a_greeting_is_still_a_question(text: str) -> None:
    assert not is_chitchat(text)


@pytest.mark.parametrize(("raw", "clean"), [
    ("hi can u gift wrap my order VC-2184266? just placed it", "Can you gift wrap my order?"),
    ("when will i see the refund for VC-2187275", "When will I see the refund?"),
    ("Hello team, where is my order #12345?? thanks!", "Where is my order?"),
    ("hey there 👋 do you ship to canada", "Do you ship to canada?"),
    ("Hi! Can I return shoes? Thanks, Sarah", "Can I return shoes?"),
    # The sentence that gives the question its topic stays.
    ("hello, my new card has not arrived. What is going on?!",
     "My new card has not arrived. What is going on?"),
    ("Somebody has stolen my card, I need help please.",
     "Somebody has stolen my card, I need help."),
    ("  does   the charger work with iPhone 15  ", "Does the charger work with iPhone 15?"),
    ("my name is John Smith, can I change my e-mail to a@b.com?", "Can I change my e-mail?"),
])
def test_a_question_is_cleaned_of_greetings_sign_offs_and_identifiers(raw: str,
                                                                      clean: str) -> None:
    assert clean_question(raw) == clean


@pytest.mark.parametrize(("text", "identifies"), [
    ("where is order VC-2184266", True), ("order #48213 late", True),
    ("ABC123456 not delivered", True), ("order 558812 missing", True),
    ("call me on +44 7700 900123", True), ("does it play 1080p video", False),
    ("is the 30W charger ok for iPhone 15", False), ("can I send 10000 euros abroad", False),
    ("do you have the covid-19 rules", False)])
def test_identifiers_are_found_and_ordinary_numbers_are_not(text: str, identifies: bool) -> None:
    assert has_identifier(text) is identifies

