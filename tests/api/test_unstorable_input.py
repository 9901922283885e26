"""Input that parses but nothing can store or echo (lone surrogates, bytes that are not UTF-8,
infinite numbers, NaN, endless digits, deep nesting) is a 422 naming the problem and where,
and nothing is written (issue 14: some were a 500)."""

from __future__ import annotations

import pytest

LONE = '"How do I \\ud800 return this?"'


def _post(api, path: str, body: str):
    return api.client.post(path, content=body.encode(),
                           headers={**api.admin, "Content-Type": "application/json"})


def test_a_lone_surrogate_in_an_entry_is_named_and_nothing_is_written(api, bot):
    r = _post(api, f"/api/v1/bots/{bot.slug}/kb/entries",
              f'{{"question": "Returns?", "answer": {LONE}, "variants": []}}')
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert "answer: a lone surrogate (\\ud800) is not a character" in error["ctx"]["error"]
    assert api.entries(bot.slug) == []


@pytest.mark.parametrize("path", ["answer", "sandbox"])
def test_a_lone_surrogate_in_a_question_is_a_422_not_a_500(api, bot, path):
    r = _post(api, f"/api/v1/bots/{bot.slug}/{path}", f'{{"question": {LONE}}}')
    assert r.status_code == 422, r.text
    assert "question: a lone surrogate" in r.json()["detail"][0]["ctx"]["error"]


def test_a_lone_surrogate_deep_in_a_conversation_names_its_place(api, bot):
    body = ('{"conversations": [{"id": "c1", "started_at": "2026-11-02T09:00:00+00:00", '
            '"messages": [{"role": "customer", "text": "hi", "at": "2026-11-02T09:00:00+00:00"},'
            ' {"role": "agent", "text": "\\udfff", "at": "2026-11-02T09:01:00+00:00"}]}]}')
    r = _post(api, f"/api/v1/bots/{bot.slug}/conversations", body)
    assert r.status_code == 422, r.text
    assert "conversations.0.messages.1.text: a lone surrogate (\\udfff)" in \
        r.json()["detail"][0]["ctx"]["error"]
    assert api.conversation_count(bot.slug) == 0


def test_emoji_and_escaped_backslashes_are_still_fine(api, bot):
    # A surrogate *pair* is one character (😀), and "\\\\ud800" is a backslash and text.
    r = _post(api, f"/api/v1/bots/{bot.slug}/kb/entries",
              '{"question": "Smile \\ud83d\\ude00?", "answer": "Path C:\\\\ud800\\\\x"}')
    assert r.status_code == 201, r.text
    assert r.json()["question"] == "Smile 😀?" and r.json()["answer"] == "Path C:\\ud800\\x"


def test_bytes_that_are_not_utf8_are_a_422(api, bot):
    r = api.client.post(f"/api/v1/bots/{bot.slug}/answer",
                        content=b'{"question": "caf\xe9?"}',
                        headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert "the body is not UTF-8 (byte 0xe9)" in r.json()["detail"][0]["ctx"]["error"]


@pytest.mark.parametrize(("body", "said"), [
    ('{"question": "hi", "x": 1e999999}', "the number 1e999999… is out of range"),
    ('{"question": NaN}', "NaN is not a JSON number"),
    ('{"question": "hi", "n": ' + "9" * 5000 + "}", "a number of 5000 digits is too long"),
    ("[" * 100_000 + "]" * 100_000, "the body is nested too deeply"),
])
def test_numbers_and_nesting_json_cannot_carry_are_a_422(api, bot, body, said):
    # Each used to end in a 500 (an infinity the 422 could not echo) or a bare 400.
    r = _post(api, f"/api/v1/bots/{bot.slug}/answer", body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["ctx"]["error"] == said


def test_the_lone_surrogate_is_named_even_after_an_emoji(api, bot):
    r = _post(api, f"/api/v1/bots/{bot.slug}/answer",
              '{"question": "\\ud83d\\ude00 fine, then \\uDC00 not"}')
    assert r.status_code == 422, r.text
    assert "question: a lone surrogate (\\udc00)" in r.json()["detail"][0]["ctx"]["error"]
