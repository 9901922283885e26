"""The knowledge base: entries, versions, revert and deactivate, and that `answer` sees every
write as soon as the call returns."""

from __future__ import annotations

from datetime import datetime

PASSWORD_Q = "How do I reset my password?"
PASSWORD_A = "Click 'Forgot password' on the sign-in page and follow the link we email you."
PASSWORD_V = ["I forgot my password"]
PARAPHRASE = "how can I reset my password"
NEW_ANSWER = "Go to Settings > Security > Reset password; the link is valid for 24 hours."


def create(api, bot, **overrides):
    body = {"question": PASSWORD_Q, "answer": PASSWORD_A, "variants": PASSWORD_V,
            "category": "account", **overrides}
    return api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries", json=body,
                           headers=bot.headers)


def test_create_entry_returns_201_and_the_entry(api, bot):
    r = create(api, bot)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert set(entry) == {"id", "version", "question", "answer", "variants", "category",
                          "active"}
    assert isinstance(entry["id"], str) and entry["id"]
    assert entry["version"] == 1
    assert entry["active"] is True
    assert entry["question"] == PASSWORD_Q
    assert entry["answer"] == PASSWORD_A
    assert entry["variants"] == PASSWORD_V
    assert entry["category"] == "account"


def test_new_entry_is_answered_immediately_for_a_paraphrase(api, bot):
    assert api.answer(bot.slug, PARAPHRASE, headers=bot.headers)["escalate"] is True
    entry = create(api, bot).json()
    # No sleep, no polling: the very next call must see the write.
    got = api.answer(bot.slug, PARAPHRASE, headers=bot.headers)
    assert got["escalate"] is False, got
    assert got["answer"] == PASSWORD_A
    assert got["entry_id"] == entry["id"]
    assert got["confidence"] >= 50


def test_list_entries(api, bot):
    first = create(api, bot).json()
    second = create(api, bot, question="Which payment methods do you accept?",
                    answer="We accept Visa, Mastercard and PayPal.", variants=[],
                    category=None).json()
    r = api.client.get(f"/api/v1/bots/{bot.slug}/kb/entries", headers=bot.headers)
    assert r.status_code == 200
    items = r.json()["items"]
    assert {i["id"] for i in items} == {first["id"], second["id"]}
    by_id = {i["id"]: i for i in items}
    assert by_id[first["id"]] == first
    assert by_id[second["id"]] == second
    assert by_id[second["id"]]["category"] is None


def test_edit_writes_a_new_version_and_keeps_the_old_one(api, bot):
    entry = create(api, bot).json()
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}",
                         json={"answer": NEW_ANSWER, "reason": "new security settings page"},
                         headers=bot.headers)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["answer"] == NEW_ANSWER
    assert r.json()["question"] == PASSWORD_Q  # untouched fields stay

    r = api.client.get(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/versions",
                       headers=bot.headers)
    assert r.status_code == 200
    versions = r.json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["answer"] == PASSWORD_A
    assert versions[1]["answer"] == NEW_ANSWER
    assert versions[1]["reason"] == "new security settings page"
    for v in versions:
        assert {"version", "answer", "variants", "changed_by", "changed_at", "reason"} <= set(v)
        assert v["variants"] == PASSWORD_V
        assert v["changed_by"]
        datetime.fromisoformat(v["changed_at"])
    assert datetime.fromisoformat(versions[0]["changed_at"]) \
        <= datetime.fromisoformat(versions[1]["changed_at"])
    # The edit is served right away.
    assert api.answer(bot.slug, PARAPHRASE)["answer"] == NEW_ANSWER


def test_revert_creates_a_new_version_equal_to_the_old_one(api, bot):
    entry = create(api, bot).json()
    path = f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}"
    assert api.client.patch(path, json={"answer": NEW_ANSWER,
                                        "variants": ["password reset link expired"]},
                            headers=bot.headers).status_code == 200
    assert api.answer(bot.slug, PARAPHRASE)["answer"] == NEW_ANSWER

    r = api.client.post(f"{path}/revert", json={"version": 1}, headers=bot.headers)
    assert r.status_code == 200, r.text
    reverted = r.json()
    assert reverted["version"] == 3
    assert reverted["id"] == entry["id"]
    assert {k: reverted[k] for k in ("question", "answer", "variants", "category", "active")} \
        == {k: entry[k] for k in ("question", "answer", "variants", "category", "active")}

    versions = api.versions(bot.slug, entry["id"])
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[2]["answer"] == versions[0]["answer"] == PASSWORD_A
    assert versions[2]["variants"] == versions[0]["variants"]
    # Served immediately, and the list shows the reverted entry.
    got = api.answer(bot.slug, PARAPHRASE, headers=bot.headers)
    assert got["answer"] == PASSWORD_A and got["entry_id"] == entry["id"]
    assert api.entries(bot.slug) == [reverted]


def test_revert_to_an_unknown_version_changes_nothing(api, bot):
    entry = create(api, bot).json()
    r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/revert",
                        json={"version": 7}, headers=bot.headers)
    assert 400 <= r.status_code < 500 and r.status_code != 401
    r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/revert",
                        json={"version": 0}, headers=bot.headers)
    assert r.status_code == 422
    assert [v["version"] for v in api.versions(bot.slug, entry["id"])] == [1]


def test_deactivate_stops_serving_at_once(api, bot):
    entry = create(api, bot).json()
    assert api.answer(bot.slug, PASSWORD_Q)["entry_id"] == entry["id"]
    r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}/deactivate",
                        headers=bot.headers)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert r.json()["version"] == 2
    for question in (PASSWORD_Q, PARAPHRASE, *PASSWORD_V):
        got = api.answer(bot.slug, question, headers=bot.headers)
        assert got["escalate"] is True, (question, got)
        assert got["answer"] is None and got["entry_id"] is None
    # Still listed (and revertible), just not served.
    assert [e["active"] for e in api.entries(bot.slug)] == [False]


def test_deactivate_falls_back_to_the_next_best_entry_not_the_inactive_one(api, bot):
    old = create(api, bot).json()
    new = create(api, bot, answer=NEW_ANSWER, variants=["how can I reset my password"]).json()
    api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries/{new['id']}/deactivate",
                    headers=bot.headers)
    got = api.answer(bot.slug, PARAPHRASE)
    assert got["entry_id"] == old["id"] and got["answer"] == PASSWORD_A


def test_revert_after_deactivate_serves_again(api, bot):
    entry = create(api, bot).json()
    path = f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}"
    api.client.post(f"{path}/deactivate", headers=bot.headers)
    r = api.client.post(f"{path}/revert", json={"version": 1}, headers=bot.headers)
    assert r.status_code == 200
    assert r.json()["active"] is True and r.json()["version"] == 3
    assert api.answer(bot.slug, PARAPHRASE)["entry_id"] == entry["id"]


def test_unknown_entry_is_404(api, bot):
    base = f"/api/v1/bots/{bot.slug}/kb/entries/does-not-exist"
    for method, path, body in [
        ("GET", f"{base}/versions", None),
        ("POST", f"{base}/revert", {"version": 1}),
        ("POST", f"{base}/deactivate", None),
        ("PATCH", base, {"answer": "x"}),
    ]:
        r = api.client.request(method, path, json=body, headers=bot.headers)
        assert r.status_code == 404, (method, path, r.text)
        assert "detail" in r.json()


def test_empty_question_or_answer_is_422_and_creates_nothing(api, bot):
    for overrides, field in [({"question": ""}, "question"), ({"answer": ""}, "answer"),
                             ({"question": "   "}, "question"), ({"answer": " \n "}, "answer")]:
        r = create(api, bot, **overrides)
        assert r.status_code == 422, (overrides, r.text)
        assert any(field in err["loc"] for err in r.json()["detail"]), (overrides, r.text)
    for body in ({"answer": PASSWORD_A}, {"question": PASSWORD_Q}):
        r = api.client.post(f"/api/v1/bots/{bot.slug}/kb/entries", json=body,
                            headers=bot.headers)
        assert r.status_code == 422, body
    assert api.entries(bot.slug) == []
    assert api.audit(bot.slug) == []


def test_edit_to_an_empty_answer_is_422_and_keeps_the_entry(api, bot):
    entry = create(api, bot).json()
    for body in ({"answer": ""}, {"answer": "   "}, {"question": ""}):
        r = api.client.patch(f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}", json=body,
                             headers=bot.headers)
        assert r.status_code == 422, (body, r.text)
    assert api.entries(bot.slug) == [entry]
    assert api.answer(bot.slug, PARAPHRASE)["answer"] == PASSWORD_A


def test_entry_changes_are_audited_newest_first(api, bot):
    entry = create(api, bot).json()
    path = f"/api/v1/bots/{bot.slug}/kb/entries/{entry['id']}"
    api.client.patch(path, json={"answer": NEW_ANSWER}, headers=bot.headers)
    api.client.post(f"{path}/deactivate", headers=api.admin)
    items = api.audit(bot.slug, entry_id=entry["id"])
    assert len(items) == 3
    assert [i["entry_id"] for i in items] == [entry["id"]] * 3
    assert items[0]["after"]["active"] is False
    assert items[1]["before"]["answer"] == PASSWORD_A
    assert items[1]["after"]["answer"] == NEW_ANSWER
    assert items[2]["after"]["answer"] == PASSWORD_A
    times = [datetime.fromisoformat(i["at"]) for i in items]
    assert times == sorted(times, reverse=True)
