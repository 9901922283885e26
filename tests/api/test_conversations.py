"""Conversation ingestion: counts, replacement by id, and all-or-nothing validation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import app
from core.conversations import MAX_BATCH, MAX_ID_CHARS, MAX_MESSAGES, MAX_TEXT_CHARS

SHIPPING_A = ("Standard shipping takes 3-5 business days and express shipping takes 1-2 "
              "business days.")


def batch(api, n: int = 3, prefix: str = "conv") -> list[dict[str, Any]]:
    """n valid conversations: the bot answers a shipping question and the customer thanks it."""
    return [api.answered(f"{prefix}-{i}", "How long does shipping take?", SHIPPING_A,
                         "entry-1", api.BASE + timedelta(hours=i)) for i in range(n)]


def test_new_conversations_are_accepted(api, bot):
    r = api.post_conversations(bot.slug, batch(api, 3), headers=bot.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "updated": 0}
    assert api.conversation_count(bot.slug) == 3


def test_resending_an_id_replaces_it_without_duplicating(api, bot):
    convs = batch(api, 3)
    assert api.ingest(bot.slug, convs) == {"accepted": 3, "updated": 0}
    # The same transcript again: counted as updated, stored once.
    r = api.post_conversations(bot.slug, [convs[0]], headers=bot.headers)
    assert r.json() == {"accepted": 0, "updated": 1}
    assert api.conversation_count(bot.slug) == 3
    # A changed transcript under a known id replaces the old one: conv-1 now ends with the
    # customer asking for a human, so it is no longer resolved by the bot.
    changed = dict(convs[1])
    changed["messages"] = [*convs[1]["messages"][:2], {
        "role": "agent", "text": "Hi, Sam here. Express shipping takes 1-2 business days.",
        "at": (api.BASE + timedelta(hours=1, minutes=5)).isoformat()}]
    fresh = api.answered("conv-new", "Can I cancel my order?", "Yes, within 1 hour.",
                         "entry-2", api.BASE + timedelta(hours=5))
    r = api.post_conversations(bot.slug, [changed, fresh], headers=bot.headers)
    assert r.status_code == 200
    assert r.json() == {"accepted": 1, "updated": 1}
    [day] = api.metrics(bot.slug, "day")
    assert day["conversations"] == 4
    assert day["escalation_rate"] == 0.25  # conv-1 only
    assert day["automatic_resolution_rate"] == 0.75


def test_same_id_on_two_bots_is_two_conversations(api, bot, other_bot):
    convs = batch(api, 2)
    assert api.ingest(bot.slug, convs) == {"accepted": 2, "updated": 0}
    assert api.ingest(other_bot.slug, convs) == {"accepted": 2, "updated": 0}
    assert api.conversation_count(bot.slug) == 2
    assert api.conversation_count(other_bot.slug) == 2


def test_empty_batch_is_fine(api, bot):
    r = api.post_conversations(bot.slug, [], headers=bot.headers)
    assert r.status_code == 200
    assert r.json() == {"accepted": 0, "updated": 0}


def test_optional_fields_are_optional(api, bot):
    conv = {"id": "minimal", "started_at": api.BASE.isoformat(),
            "messages": [{"role": "customer", "text": "hello, is anyone there?",
                          "at": api.BASE.isoformat()}]}
    full = {**batch(api, 1, "full")[0], "feedback": [{"message_index": 1, "rating": "up"}],
            "csat": 5, "channel": "whatsapp"}
    assert api.ingest(bot.slug, [conv, full]) == {"accepted": 2, "updated": 0}


# -- all-or-nothing validation ---------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Mutation:
    def apply(conv: dict[str, Any]) -> None:
        target = conv
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _drop(path: list[Any]) -> Mutation:
    def apply(conv: dict[str, Any]) -> None:
        target = conv
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return apply


# (name, mutation of conversation 2 of 3, the loc the 422 must point at)
FIELD_ERRORS: list[tuple[str, Mutation, list[Any]]] = [
    ("unknown role", _set(["messages", 0, "role"], "robot"), ["messages", 0, "role"]),
    ("text not a string", _set(["messages", 1, "text"], 42), ["messages", 1, "text"]),
    ("messages not a list", _set(["messages"], {"role": "customer"}), ["messages"]),
    ("no messages", _set(["messages"], []), ["messages"]),
    ("id not a string", _set(["id"], 17), ["id"]),
    ("id too long", _set(["id"], "c" * (MAX_ID_CHARS + 1)), ["id"]),
    ("empty id", _set(["id"], ""), ["id"]),
    ("bad timestamp", _set(["started_at"], "last tuesday"), ["started_at"]),
    ("missing started_at", _drop(["started_at"]), ["started_at"]),
    ("missing message time", _drop(["messages", 0, "at"]), ["messages", 0, "at"]),
    ("missing id", _drop(["id"]), ["id"]),
    ("csat 6", _set(["csat"], 6), ["csat"]),
    ("csat 0", _set(["csat"], 0), ["csat"]),
    ("csat not a number", _set(["csat"], "great"), ["csat"]),
    ("unknown rating", _set(["feedback"], [{"message_index": 1, "rating": "meh"}]),
     ["feedback", 0, "rating"]),
    ("negative feedback index", _set(["feedback"], [{"message_index": -1, "rating": "up"}]),
     ["feedback", 0, "message_index"]),
    ("unknown field", _set(["sentiment"], "angry"), ["sentiment"]),
    ("text over the limit", _set(["messages", 0, "text"], "a" * (MAX_TEXT_CHARS + 1)),
     ["messages", 0, "text"]),
    ("too many messages", _set(["messages"], [
        {"role": "customer", "text": "hello?", "at": "2026-11-02T09:00:00Z"}
    ] * (MAX_MESSAGES + 1)), ["messages"]),
]


def assert_nothing_written(api, slug: str) -> None:
    assert api.metrics(slug, "month") == []
    # The valid conversations of a refused batch were not stored either: sending them now
    # counts them as new.
    assert api.ingest(slug, batch(api, 2)) == {"accepted": 2, "updated": 0}


def test_each_bad_field_is_422_naming_index_and_field_and_writes_nothing(api, bot):
    for name, mutate, loc in FIELD_ERRORS:
        convs = batch(api, 3)
        mutate(convs[2])
        r = api.post_conversations(bot.slug, convs, headers=bot.headers)
        assert r.status_code == 422, (name, r.text[:300])
        locs = [err["loc"] for err in r.json()["detail"]]
        assert ["body", "conversations", 2, *loc] in locs, (name, locs)
        assert api.metrics(bot.slug, "month") == [], name
    assert_nothing_written(api, bot.slug)


def model_error(r: Any) -> tuple[list[Any], str]:
    [err] = r.json()["detail"]
    return err["loc"], err["msg"]


def test_feedback_on_a_missing_message_is_422_and_writes_nothing(api, bot):
    convs = batch(api, 3)
    convs[2]["feedback"] = [{"message_index": 9, "rating": "down"}]
    r = api.post_conversations(bot.slug, convs, headers=bot.headers)
    assert r.status_code == 422
    loc, msg = model_error(r)
    assert loc[:3] == ["body", "conversations", 2], loc
    assert "feedback" in msg and "message_index" in msg, msg
    assert_nothing_written(api, bot.slug)


def test_feedback_on_a_customer_message_is_422(api, bot):
    convs = batch(api, 3)
    convs[1]["feedback"] = [{"message_index": 0, "rating": "up"}]
    r = api.post_conversations(bot.slug, convs, headers=bot.headers)
    assert r.status_code == 422
    loc, msg = model_error(r)
    assert loc[:3] == ["body", "conversations", 1], loc
    assert "feedback" in msg
    assert_nothing_written(api, bot.slug)


def test_duplicate_ids_in_one_batch_are_422_and_write_nothing(api, bot):
    convs = batch(api, 3)
    convs[2]["id"] = convs[0]["id"]
    r = api.post_conversations(bot.slug, convs, headers=bot.headers)
    assert r.status_code == 422
    _, msg = model_error(r)
    assert "conversations[2].id" in msg and "conversations[0]" in msg, msg
    assert_nothing_written(api, bot.slug)


def test_duplicate_of_a_stored_id_in_one_batch_does_not_update_it(api, bot):
    stored = batch(api, 1)
    api.ingest(bot.slug, stored)
    again = [stored[0], dict(stored[0], csat=1)]
    r = api.post_conversations(bot.slug, again, headers=bot.headers)
    assert r.status_code == 422
    [day] = api.metrics(bot.slug, "day")
    assert day["csat"] is None and day["negative_feedback_rate"] == 0.0


@pytest.mark.parametrize("case", ["feedback index out of range", "duplicate id"])
def test_cross_field_errors_point_loc_at_the_field(api, bot, case):
    convs = batch(api, 3)
    if case == "duplicate id":
        convs[2]["id"] = convs[0]["id"]
        expected = ["body", "conversations", 2, "id"]
    else:
        convs[2]["feedback"] = [{"message_index": 9, "rating": "down"}]
        expected = ["body", "conversations", 2, "feedback", 0, "message_index"]
    r = api.post_conversations(bot.slug, convs, headers=bot.headers)
    assert r.status_code == 422
    assert [err["loc"] for err in r.json()["detail"]] == [expected]


def test_batch_over_the_limit_is_422_and_writes_nothing(api, bot):
    convs = [{"id": f"c{i}", "started_at": "2026-11-02T09:00:00Z",
              "messages": [{"role": "customer", "text": "hi", "at": "2026-11-02T09:00:00Z"}]}
             for i in range(MAX_BATCH + 1)]
    r = api.post_conversations(bot.slug, convs, headers=bot.headers)
    assert r.status_code == 422, r.text[:300]
    assert ["body", "conversations"] in [err["loc"] for err in r.json()["detail"]]
    assert api.metrics(bot.slug, "month") == []
    # Exactly the limit is fine.
    r = api.post_conversations(bot.slug, convs[:MAX_BATCH], headers=bot.headers)
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"accepted": MAX_BATCH, "updated": 0}


def test_malformed_json_is_422_and_writes_nothing(api, bot):
    good = json.dumps({"conversations": batch(api, 3)}).encode()
    for raw in (good[:-10], b"{conversations: []}", b"", b"[]", b"null"):
        r = api.client.post(f"/api/v1/bots/{bot.slug}/conversations", content=raw,
                            headers={**bot.headers, "Content-Type": "application/json"})
        assert r.status_code == 422, (raw[:30], r.text[:300])
        assert r.json()["detail"], raw[:30]
    assert_nothing_written(api, bot.slug)


def oversized_body(api) -> bytes:
    """A valid batch (it would be accepted if it were smaller) just over the byte limit."""
    filler = "x" * (MAX_TEXT_CHARS - 100)
    convs, size = [], 0
    i = 0
    while size <= app.MAX_BODY_BYTES:
        conv = batch(api, 1, f"big{i}")[0]
        last = conv["messages"][-1]
        conv["messages"] += [{**last, "text": f"one more detail: {filler}"}] * 2
        convs.append(conv)
        size += len(json.dumps(conv)) + 2
        i += 1
    body = json.dumps({"conversations": convs}).encode()
    assert len(body) > app.MAX_BODY_BYTES and len(convs) <= MAX_BATCH
    return body


def test_body_over_the_byte_limit_is_413_and_writes_nothing(api, bot):
    body = oversized_body(api)
    r = api.client.post(f"/api/v1/bots/{bot.slug}/conversations", content=body,
                        headers={**bot.headers, "Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert str(app.MAX_BODY_BYTES) in r.json()["detail"]
    assert_nothing_written(api, bot.slug)


def test_streamed_body_over_the_byte_limit_is_413(api, bot):
    body = oversized_body(api)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    r = api.client.post(f"/api/v1/bots/{bot.slug}/conversations", content=chunks(),
                        headers={**bot.headers, "Content-Type": "application/json"})
    assert api.metrics(bot.slug, "month") == []
    assert r.status_code == 413, r.text[:300]
