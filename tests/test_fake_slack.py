"""The fake Slack Web API answers the real slack_sdk clients, and the signing helpers sign as
Slack does (checked with slack_sdk's verifier and a real slack-bolt App)."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fake_slack import RESPONSE_URL_METHOD, UPLOAD_METHOD, FakeSlack, parse_body
from tests.slack_signing import (
    JSON,
    MultiSelect,
    Select,
    block_action_body,
    event_body,
    signature,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

SECRET = "test-signing-secret"
CARD = [SectionBlock(block_id="summary", text="*Refund policy* needs an answer"),
        ActionsBlock(block_id="decide", elements=[
            ButtonElement(action_id="approve", text="Approve", value='{"suggestion_id": "s1"}')])]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as f:  # the pattern for a fixture in any test module or conftest
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


# -- the Web API, through the real clients ----------------------------------------------------

def test_post_message_is_recorded_with_its_blocks_and_gets_increasing_ts(
        fake: FakeSlack, client: WebClient) -> None:
    first = client.chat_postMessage(channel="C1", text="A suggestion to review", blocks=CARD)
    second = client.chat_postMessage(channel="C1", text="another")

    call = fake.last("chat.postMessage")
    assert call.token == "xoxb-test"
    assert call.body["channel"] == "C1"
    assert [b["block_id"] for b in fake.calls_to("chat.postMessage")[0].blocks] == [
        "summary", "decide"]
    assert fake.calls_to("chat.postMessage")[0].blocks[1]["elements"][0]["action_id"] == "approve"
    assert first["channel"] == "C1" and first["message"]["blocks"][0]["block_id"] == "summary"
    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert call.headers["authorization"] == "Bearer xoxb-test"


def test_form_and_multipart_bodies_are_parsed_and_json_fields_decoded(
        fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    client.api_call("chat.postMessage", params={"channel": "C2", "text": "hi",
                                                 "blocks": json.dumps(blocks)})
    form = fake.last("chat.postMessage")
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert isinstance(form.body["blocks"], str)  # as sent; the helper decodes it
    assert form.blocks == blocks and form.decoded("channel") == "C2"

    client.api_call("files.upload", data={"channels": "C3", "filename": "r.csv"},
                    files={"file": io.BytesIO(b"a,b\n1,2\n")})
    multipart = fake.last("files.upload")
    assert multipart.headers["content-type"].startswith("multipart/form-data")
    assert multipart.body == {"channels": "C3", "filename": "r.csv", "file": b"a,b\n1,2\n"}


def test_parse_body_merges_the_query_string() -> None:
    assert parse_body("", b"", "user=U9&x=1&x=2") == {"user": "U9", "x": ["1", "2"]}
    assert parse_body("application/json", b'{"a": [1]}', "q=1") == {"q": "1", "a": [1]}


async def test_async_client_is_recorded_and_gets_a_view_id(fake: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-async", base_url=fake.base_url)
    posted = await client.chat_postMessage(channel="C9", text="async", blocks=CARD)
    opened = await client.views_open(trigger_id="trig-1", view={
        "type": "modal", "callback_id": "edit", "private_metadata": '{"id": "s1"}',
        "title": {"type": "plain_text", "text": "Edit"}, "blocks": []})

    assert fake.last("chat.postMessage").token == "xoxb-async"
    assert fake.last("chat.postMessage").blocks[0]["block_id"] == "summary"
    assert posted["ts"] and posted["channel"] == "C9"
    assert opened["view"]["id"].startswith("V")
    assert opened["view"]["callback_id"] == "edit"
    assert opened["view"]["private_metadata"] == '{"id": "s1"}'
    assert (await fake.wait_for_async("views.open"))[0].decoded("view")["type"] == "modal"


def test_realistic_answers_for_the_methods_the_bot_uses(
        fake: FakeSlack, client: WebClient) -> None:
    fake.set_group("S123", ["U1", "U2"])
    fake.set_user("U7", profile={"email": "ana@example.com", "real_name": "Ana"})

    auth = client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")
    assert auth["url"].startswith("https://")
    assert client.usergroups_users_list(usergroup="S123")["users"] == ["U1", "U2"]
    assert client.usergroups_users_list(usergroup="S999")["users"] == []
    user = client.users_info(user="U7")["user"]
    assert (user["id"], user["team_id"]) == ("U7", "T1") and user["name"]
    assert user["profile"]["email"] == "ana@example.com"
    assert client.conversations_info(channel="C5")["channel"]["id"] == "C5"
    assert client.chat_update(channel="C5", ts="1.2", text="done")["ts"] == "1.2"
    assert client.chat_postEphemeral(channel="C5", user="U7", text="no")["message_ts"]
    assert client.chat_delete(channel="C5", ts="1.2")["ok"] is True
    updated = client.views_update(view_id="V42", view={"type": "modal", "blocks": []})
    assert updated["view"]["id"] == "V42"
    pushed = client.views_push(trigger_id="t", view={"type": "modal", "blocks": []})
    home = client.views_publish(user_id="U7", view={"type": "home", "blocks": []})
    assert pushed["view"]["id"] != home["view"]["id"] and home["view"]["type"] == "home"
    assert client.api_call("admin.something.new")["ok"] is True
    assert fake.methods()[-1] == "admin.something.new"


def test_a_call_without_a_token_is_not_authed(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=fake.base_url).chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "not_authed"
    assert fake.last("chat.postMessage").token is None


def test_files_upload_v2_completes_against_the_fake(fake: FakeSlack, client: WebClient) -> None:
    done = client.files_upload_v2(content=b"png bytes", filename="x.png", channel="C1",
                                  title="Chart")

    file_id = done["file"]["id"]
    assert fake.uploaded(file_id) == b"png bytes"
    assert fake.last(UPLOAD_METHOD).body["length"] == len(b"png bytes")
    assert fake.methods() == ["files.getUploadURLExternal", UPLOAD_METHOD,
                              "files.completeUploadExternal"]
    complete = fake.last("files.completeUploadExternal")
    assert complete.body["channel_id"] == "C1"
    assert complete.decoded("files") == [{"id": file_id, "title": "Chart"}]
    assert done["file"]["name"] == "x.png" and done["file"]["size"] == len(b"png bytes")


async def test_async_files_upload_v2_completes_against_the_fake(fake: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url)
    done = await client.files_upload_v2(content=b"\x89PNG", filename="y.png", channel="C2")
    assert fake.uploaded(done["file"]["id"]) == b"\x89PNG"


# -- failure injection -----------------------------------------------------------------------

def test_fail_next_gives_slack_api_error_then_recovers(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="CGONE", text="x")
    assert err.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C1", text="x")["ok"] is True
    assert len(fake.calls_to("chat.postMessage")) == 2


def test_rate_limit_without_a_retry_handler_is_a_429_with_retry_after(
        fake: FakeSlack, client: WebClient) -> None:
    fake.rate_limit_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"


def test_rate_limit_is_retried_by_slack_sdks_handler(fake: FakeSlack, client: WebClient) -> None:
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    fake.rate_limit_next("chat.postMessage", retry_after=0)

    assert client.chat_postMessage(channel="C1", text="x")["ok"] is True
    assert len(fake.calls_to("chat.postMessage")) == 2  # the limited one and the retry


async def test_rate_limit_is_retried_by_the_async_handler(fake: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=fake.base_url,
                            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    fake.rate_limit_next("views.open", retry_after=0)
    assert (await client.views_open(trigger_id="t", view={"type": "modal"}))["ok"] is True
    assert len(fake.calls_to("views.open")) == 2


def test_delay_makes_slack_slow_and_a_short_client_timeout_fails(fake: FakeSlack) -> None:
    fake.delay("chat.postMessage", 0.4)
    started = time.monotonic()
    WebClient(token="xoxb-test", base_url=fake.base_url).chat_postMessage(channel="C", text="x")
    assert time.monotonic() - started >= 0.4

    fake.delay("chat.postMessage", 5)
    with pytest.raises(TimeoutError):
        WebClient(token="xoxb-test", base_url=fake.base_url,
                  timeout=1).chat_postMessage(channel="C", text="x")


def test_stopping_does_not_wait_for_a_delayed_request() -> None:
    fake = FakeSlack().start()
    fake.delay("chat.postMessage", 60)
    errors: list[BaseException] = []

    def post() -> None:
        try:
            WebClient(token="xoxb-test", base_url=fake.base_url).chat_postMessage(
                channel="C", text="x")
        except Exception as exc:
            errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    fake.wait_for("chat.postMessage")
    started = time.monotonic()
    fake.stop()
    poster.join(timeout=10)
    assert time.monotonic() - started < 5
    assert not poster.is_alive() and errors  # the client saw the connection drop


def test_a_bug_in_the_fake_fails_the_test_when_it_stops() -> None:
    with pytest.raises(AssertionError, match="FakeSlack failed while serving"):
        with FakeSlack() as fake, pytest.raises(SlackApiError) as err:
            WebClient(token="xoxb-test", base_url=fake.base_url).api_call(
                "files.completeUploadExternal", params={"files": '[{"title": "no id"}]'})
    assert err.value.response.status_code == 500


# -- waiting and bookkeeping -----------------------------------------------------------------

def test_wait_for_sees_a_call_posted_later_from_another_thread(
        fake: FakeSlack, client: WebClient) -> None:
    timer = threading.Timer(0.2, lambda: client.chat_update(channel="C1", ts="1.1", text="ok"))
    timer.start()
    try:
        calls = fake.wait_for("chat.update", timeout=5)
    finally:
        timer.join()
    assert calls[0].body["ts"] == "1.1"


def test_wait_for_and_last_name_the_method_and_what_was_seen(
        fake: FakeSlack, client: WebClient) -> None:
    client.auth_test()
    with pytest.raises(AssertionError, match=r"chat\.update.*auth\.test"):
        fake.wait_for("chat.update", timeout=0.2)
    with pytest.raises(AssertionError, match=r"no call to views\.open.*auth\.test"):
        fake.last("views.open")


def test_reset_forgets_calls_and_pending_failures_but_keeps_groups(
        fake: FakeSlack, client: WebClient) -> None:
    fake.set_group("S1", ["U1"])
    fake.fail_next("chat.postMessage")
    client.auth_test()
    fake.reset()
    assert fake.calls == []
    assert client.chat_postMessage(channel="C1", text="x")["ok"] is True
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1"]


# -- signing, checked by slack_sdk and by a real bolt App ------------------------------------

def _verify(body: str, headers: dict[str, str], secret: str = SECRET) -> bool:
    return SignatureVerifier(secret).is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])


@pytest.mark.parametrize("body", [
    block_action_body(action_id="approve", value='{"suggestion_id": "s1"}'),
    view_submission_body(callback_id="edit", values={"answer": {"text": "Hello ✓"}},
                         private_metadata="{}"),
    slash_command_body(text="queue 5 & more"),
    event_body({"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "channel": "C1"}),
])
def test_signatures_pass_slack_sdks_verifier(body: str) -> None:
    headers = signed_headers(body, SECRET)
    assert headers["X-Slack-Signature"].startswith("v0=")
    assert _verify(body, headers)


def test_stale_modified_or_wrongly_keyed_requests_fail_verification() -> None:
    body = slash_command_body(text="approve s1")
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 600)
    assert not _verify(body, stale)
    fresh = signed_headers(body, SECRET)
    assert not _verify(body.replace("approve", "reject"), fresh)
    assert not _verify(body, fresh, secret="another-secret")
    # The same algorithm, checked against a known vector from Slack's documentation.
    doc_body = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
                "channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
                "command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
                "commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
                "trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    assert signature(doc_body, "8f742231b10e8888abcd99yyyzzz85a5", 1531420618) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")


def _payload(body: str) -> dict[str, Any]:
    return json.loads(parse_qs(body)["payload"][0])


def test_interaction_bodies_have_slacks_shape() -> None:
    click = _payload(block_action_body(action_id="approve", value="v", message_blocks=[
        b.to_dict() for b in CARD]))
    assert click["type"] == "block_actions"
    assert click["container"] == {"type": "message", "message_ts": "1700000000.000100",
                                  "channel_id": "C123", "is_ephemeral": False}
    assert click["actions"][0]["block_id"] == "decide"  # found in the message's blocks
    assert click["message"]["blocks"][0]["block_id"] == "summary"
    select = _payload(block_action_body(action_id="pick", selected_option="weekly"))
    assert select["actions"][0]["selected_option"]["value"] == "weekly"
    assert "value" not in select["actions"][0]

    sub = _payload(view_submission_body(callback_id="edit", private_metadata='{"id": "s1"}',
                                        values={"answer": {"text": "new"},
                                                "when": {"date": dt.date(2024, 1, 31)},
                                                "who": {"pick": Select("U1")},
                                                "tags": {"many": MultiSelect(("a", "b"))}}))
    values = sub["view"]["state"]["values"]
    assert values["answer"]["text"] == {"type": "plain_text_input", "value": "new"}
    assert values["when"]["date"]["selected_date"] == "2024-01-31"
    assert values["who"]["pick"]["selected_option"]["value"] == "U1"
    assert [o["value"] for o in values["tags"]["many"]["selected_options"]] == ["a", "b"]


def test_a_bolt_app_accepts_the_signed_requests_and_its_replies_reach_the_fake(
        fake: FakeSlack) -> None:
    app = App(signing_secret=SECRET,
              client=WebClient(token="xoxb-test", base_url=fake.base_url))
    seen: dict[str, Any] = {}

    @app.action("approve")
    def on_approve_clicked(ack: Any, body: dict[str, Any], client: WebClient,
                           respond: Any) -> None:
        seen["value"] = body["actions"][0]["value"]
        ack()
        client.chat_update(channel=body["container"]["channel_id"],
                           ts=body["container"]["message_ts"], text="Approved")
        respond("Approved by you")

    @app.view("edit")
    def on_edit_submitted(ack: Any, view: dict[str, Any]) -> None:
        seen["edit"] = view["state"]["values"]["answer"]["text"]["value"]
        ack()

    @app.command("/autotrain")
    def on_command(ack: Any, command: dict[str, Any]) -> None:
        ack(f"queue for {command['user_id']}")

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], say: Any) -> None:
        say(f"you said {event['text']}")

    def send(body: str, content_type: str = "application/x-www-form-urlencoded",
             secret: str = SECRET) -> int:
        headers = signed_headers(body, secret, content_type=content_type)
        return app.dispatch(BoltRequest(body=body, headers=headers)).status

    click = block_action_body(action_id="approve", value="s1", response_url=fake.response_url)
    assert send(click) == 200
    assert seen["value"] == "s1"
    # bolt runs the rest of a listener after the ack, so wait for its calls to arrive
    fake.wait_for(RESPONSE_URL_METHOD)
    update = fake.last("chat.update").body
    assert (update["channel"], update["ts"], update["text"]) == (
        "C123", "1700000000.000100", "Approved")
    assert fake.last(RESPONSE_URL_METHOD).body["text"] == "Approved by you"
    assert send(view_submission_body(callback_id="edit", private_metadata="{}",
                                     values={"answer": {"text": "better"}})) == 200
    assert seen["edit"] == "better"
    assert send(slash_command_body(text="queue")) == 200
    assert send(event_body({"type": "app_mention", "text": "hi", "user": "U1", "channel": "C1",
                            "ts": "1.1"}), content_type=JSON) == 200
    said = fake.wait_for("chat.postMessage")[0]
    assert (said.body["channel"], said.body["text"]) == ("C1", "you said hi")
    assert send(click, secret="wrong") == 401
