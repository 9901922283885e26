"""A recording fake Slack Web API on 127.0.0.1 that the real slack_sdk clients can talk to."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

TEAM_ID = "T1"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A1"
UPLOAD_METHOD = "upload"  # how the POST of a file's bytes to its upload_url is recorded
RESPONSE_URL_METHOD = "response_url"  # how a POST to `FakeSlack.response_url` is recorded
_FIRST_TS_SECONDS = 1_700_000_000


@dataclass(frozen=True)
class Call:
    """One request the fake received. `headers` keys are lower-case; `token` comes from the
    Bearer header or, failing that, a `token` field. Form and multipart bodies keep JSON fields
    (`blocks`, `view`, `files`) as strings, JSON bodies as objects: `decoded` reads both."""

    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    token: str | None

    def decoded(self, key: str, default: Any = None) -> Any:
        """`body[key]`, with a JSON string (as form-encoded clients send `blocks`) decoded."""
        return _json_field(self.body.get(key, default))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        return self.decoded("blocks") or []


@dataclass(frozen=True)
class _Reply:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str]
    text: str | None = None  # a plain-text body instead of the JSON payload


class FakeSlack:
    """A Slack Web API on a free loopback port, run in a background thread.

    Point a client at it with `WebClient(token="xoxb-test", base_url=fake.base_url)`. Every
    request is recorded (when it arrives, before any `delay`) and answered like Slack does:
    HTTP 200 with `{"ok": true, ...}`; a request without a token gets `not_authed`. Use it as a
    context manager, or through the `fake_slack` fixture below.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._failures: dict[str, deque[_Reply]] = {}
        self._delays: dict[str, float] = {}
        self._responses: dict[str, dict[str, Any]] = {}
        self._groups: dict[str, list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._pending_files: dict[str, dict[str, Any]] = {}
        self._uploads: dict[str, bytes] = {}
        self._counter = 0
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []  # bugs in the fake itself, raised again on exit

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        if self._server is not None:
            raise RuntimeError("FakeSlack is already running")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # Join handler threads on close so no socket outlives the test.
        server.daemon_threads = False
        server.block_on_close = True
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-slack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a `delay`
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if exc_type is None and self.errors:
            raise AssertionError(f"FakeSlack failed while serving: {self.errors[0]!r}") \
                from self.errors[0]

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("FakeSlack is not running; use `with FakeSlack() as fake:`")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """What to pass as `WebClient(base_url=...)`; methods are posted to {base_url}{method}."""
        return f"{self.url}/api/"

    @property
    def response_url(self) -> str:
        """A `response_url` for interaction payloads; POSTs to it are recorded as
        RESPONSE_URL_METHOD (Slack's is on hooks.slack.com, which a test must never reach)."""
        return f"{self.url}/response/1"

    # -- what was received -----------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call so far, in arrival order."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self._calls if c.method == method]

    def methods(self) -> list[str]:
        """The methods called so far, in order (for assertion messages)."""
        with self._cond:
            return [c.method for c in self._calls]

    def last(self, method: str) -> Call:
        calls = self.calls_to(method)
        if not calls:
            raise AssertionError(f"no call to {method}; calls seen: {self.methods()}")
        return calls[-1]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until at least `count` calls to `method` arrived; return all calls to it.
        Handlers often call Slack after the HTTP ack, so a test cannot just look right away."""
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: sum(c.method == method for c in self._calls) >= count, timeout)
            calls = [c for c in self._calls if c.method == method]
            if not arrived:
                raise AssertionError(
                    f"waited {timeout}s for {count} call(s) to {method}, got {len(calls)}; "
                    f"calls seen: {[c.method for c in self._calls]}")
            return calls

    async def wait_for_async(self, method: str, count: int = 1,
                             timeout: float = 5.0) -> list[Call]:
        """`wait_for` without blocking the event loop (the handler may run on that loop)."""
        return await asyncio.to_thread(self.wait_for, method, count, timeout)

    def uploaded(self, file_id: str) -> bytes:
        """The bytes posted to `file_id`'s upload_url."""
        with self._cond:
            if file_id not in self._uploads:
                raise AssertionError(
                    f"nothing uploaded for {file_id}; uploads: {list(self._uploads)}")
            return self._uploads[file_id]

    def reset(self) -> None:
        """Forget recorded calls, uploads and pending failures, delays and response overrides.
        Workspace data (`set_group`, `set_user`) is kept, and new `ts` values stay unique."""
        with self._cond:
            self._calls.clear()
            self._failures.clear()
            self._delays.clear()
            self._responses.clear()
            self._uploads.clear()
            self._pending_files.clear()

    # -- the workspace ---------------------------------------------------------------------

    def set_group(self, group_id: str, users: list[str]) -> None:
        """The members `usergroups.users.list` returns for `group_id` (unknown groups: none)."""
        with self._cond:
            self._groups[group_id] = list(users)

    def set_user(self, user_id: str, **fields: Any) -> None:
        """Override fields of the user `users.info` returns, e.g. `profile={"email": ...}`."""
        with self._cond:
            self._users[user_id] = fields

    # -- scripting Slack's behaviour -------------------------------------------------------

    def set_response(self, method: str, payload: dict[str, Any]) -> None:
        """Answer every later call to `method` with `payload` (HTTP 200) instead of the default."""
        with self._cond:
            self._responses[method] = payload

    def fail_next(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        """The next `times` calls to `method` get `{"ok": false, "error": error}` (HTTP 200)."""
        self._enqueue(method, _Reply(200, {"ok": False, "error": error}, {}), times)

    def rate_limit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls to `method` get HTTP 429 with `Retry-After: retry_after`."""
        reply = _Reply(429, {"ok": False, "error": "ratelimited"},
                       {"Retry-After": str(retry_after)})
        self._enqueue(method, reply, times)

    def delay(self, method: str, seconds: float) -> None:
        """Answer every later call to `method` after `seconds` (0 removes the delay)."""
        with self._cond:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def _enqueue(self, method: str, reply: _Reply, times: int) -> None:
        with self._cond:
            self._failures.setdefault(method, deque()).extend([reply] * times)

    # -- serving (called from handler threads) ---------------------------------------------

    def _record(self, call: Call) -> tuple[_Reply | None, float]:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()
            queue = self._failures.get(call.method)
            failure = queue.popleft() if queue else None
            return failure, self._delays.get(call.method, 0.0)

    def _next_id(self, prefix: str) -> str:
        with self._cond:
            self._counter += 1
            return f"{prefix}{self._counter:07d}"

    def _next_ts(self) -> str:
        with self._cond:
            self._counter += 1
            micros = self._counter * 100
        return f"{_FIRST_TS_SECONDS + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _api(self, call: Call) -> _Reply:
        failure, delay = self._record(call)
        if delay and self._stopping.wait(delay):
            raise _Stopping
        if failure is not None:
            return failure
        if call.token is None:
            return _Reply(200, {"ok": False, "error": "not_authed"}, {})
        with self._cond:
            override = self._responses.get(call.method)
        if override is not None:
            return _Reply(200, override, {})
        answer = getattr(self, "_m_" + call.method.replace(".", "_"), None)
        payload = answer(call.body) if answer is not None else {}
        headers = {"x-oauth-scopes": _SCOPES} if call.method == "auth.test" else {}
        return _Reply(200, {"ok": True, **payload}, headers)

    def _upload(self, file_id: str, raw: bytes, call: Call) -> _Reply | None:
        failure, delay = self._record(call)
        if delay and self._stopping.wait(delay):
            raise _Stopping
        if failure is not None:
            return failure
        with self._cond:
            if file_id not in self._pending_files:
                return _Reply(404, {"ok": False, "error": "unknown_file"}, {})
            self._uploads[file_id] = raw
        return None

    # One `_m_<method>` per Slack method with a realistic answer (without "ok").

    def _m_auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://fake-workspace.slack.com/", "team": "Fake Workspace",
                "user": "autotrain", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                "is_enterprise_install": False}

    def _message(self, body: dict[str, Any], ts: str) -> dict[str, Any]:
        return {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                "team": TEAM_ID, "ts": ts, "text": body.get("text", ""),
                "blocks": _json_field(body.get("blocks")) or []}

    def _m_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        return {"channel": body.get("channel"), "ts": ts, "message": self._message(body, ts)}

    def _m_chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        ts = str(body.get("ts", ""))
        return {"channel": body.get("channel"), "ts": ts, "text": body.get("text", ""),
                "message": self._message(body, ts)}

    def _m_chat_postEphemeral(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._next_ts()}

    def _m_chat_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"channel": body.get("channel"), "ts": body.get("ts")}

    def _view(self, body: dict[str, Any], *, view_type: str | None = None) -> dict[str, Any]:
        view = _json_field(body.get("view")) or {}
        view_id = body.get("view_id") or self._next_id("V")
        return {"view": {
            "id": view_id, "team_id": TEAM_ID, "type": view_type or view.get("type", "modal"),
            "callback_id": view.get("callback_id", ""),
            "private_metadata": view.get("private_metadata", ""),
            "external_id": body.get("external_id") or view.get("external_id", ""),
            "title": view.get("title"), "blocks": view.get("blocks", []),
            "state": {"values": {}}, "hash": f"{self._next_id('')}.hash",
            "root_view_id": view_id, "previous_view_id": None, "app_id": APP_ID,
            "bot_id": BOT_ID}}

    def _m_views_open(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body)

    def _m_views_update(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body)

    def _m_views_push(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body)

    def _m_views_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._view(body, view_type="home")

    def _m_users_info(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id = str(body.get("user", ""))
        name = f"user-{user_id.lower()}"
        user: dict[str, Any] = {
            "id": user_id, "team_id": TEAM_ID, "name": name, "real_name": name.title(),
            "deleted": False, "is_bot": False, "is_admin": False, "tz": "UTC",
            "profile": {"real_name": name.title(), "display_name": name,
                        "email": f"{name}@example.com"}}
        with self._cond:
            user.update(self._users.get(user_id, {}))
        return {"user": user}

    def _m_usergroups_users_list(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            return {"users": list(self._groups.get(str(body.get("usergroup", "")), []))}

    def _m_conversations_info(self, body: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(body.get("channel", ""))
        is_im = channel_id.startswith("D")
        return {"channel": {"id": channel_id, "name": f"channel-{channel_id.lower()}",
                            "is_channel": not is_im, "is_im": is_im,
                            "is_private": channel_id.startswith("G"), "is_archived": False,
                            "is_member": True, "context_team_id": TEAM_ID}}

    def _m_files_getUploadURLExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        file_id = self._next_id("F")
        with self._cond:
            self._pending_files[file_id] = {"name": body.get("filename", ""),
                                            "length": int(body.get("length") or 0)}
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = body.get("channel_id")
        files = []
        for item in _json_field(body.get("files")) or []:
            with self._cond:
                pending = self._pending_files.get(item["id"], {})
                size = len(self._uploads.get(item["id"], b""))
            name = pending.get("name", "")
            files.append({"id": item["id"], "name": name, "title": item.get("title") or name,
                          "size": size,
                          "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
                          "user": BOT_USER_ID, "channels": [channel] if channel else [],
                          "url_private": f"{self.url}/files/{item['id']}/{name}"})
        return {"files": files}


_SCOPES = ("chat:write,commands,users:read,users:read.email,usergroups:read,channels:read,"
           "files:write")


class _Stopping(Exception):
    """The server is shutting down while a handler sleeps in a `delay`: drop the request."""


def _json_field(value: Any) -> Any:
    if isinstance(value, str | bytes) and value[:1] in ("{", "[", b"{", b"["):
        return json.loads(value)
    return value


def _flatten(multi: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in multi.items()}


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    body: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        # A file part keeps its bytes; a plain field is text, as in a form body.
        body[str(name)] = data if part.get_filename() else data.decode("utf-8")
    return body


def parse_body(content_type: str, raw: bytes, query: str = "") -> dict[str, Any]:
    """A request's parameters: the query string, then a JSON, form or multipart body."""
    body = _flatten(parse_qs(query, keep_blank_values=True))
    kind = content_type.split(";")[0].strip().lower()
    if not raw:
        return body
    if kind == "application/json":
        decoded = json.loads(raw)
        body.update(decoded if isinstance(decoded, dict) else {"_json": decoded})
    elif kind == "multipart/form-data":
        body.update(_parse_multipart(content_type, raw))
    else:
        body.update(_flatten(parse_qs(raw.decode("utf-8"), keep_blank_values=True)))
    return body


def _token(headers: dict[str, str], body: dict[str, Any]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[len("bearer "):].strip() or None
    token = body.get("token")
    return token if isinstance(token, str) and token else None


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # a client that connects and sends nothing cannot hold up shutdown

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            try:
                reply = self._dispatch()
            except _Stopping:
                self.close_connection = True
                return
            except Exception as exc:  # a bug in the fake: fail loudly, not with a hang
                fake.errors.append(exc)
                reply = _Reply(500, {"ok": False, "error": f"fake_slack_error: {exc!r}"}, {})
            try:
                self._send(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _dispatch(self) -> _Reply:
            split = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = split.path
            if path.startswith("/upload/"):
                file_id = path.removeprefix("/upload/")
                call = Call(UPLOAD_METHOD, {"file_id": file_id, "length": len(raw),
                                            "content_type": headers.get("content-type", "")},
                            headers, None)
                failure = fake._upload(file_id, raw, call)
                return failure or _Reply(200, {}, {}, text=f"OK - {len(raw)}")
            body = parse_body(headers.get("content-type", ""), raw, split.query)
            if path.startswith("/response/"):
                failure, _ = fake._record(Call(RESPONSE_URL_METHOD, body, headers, None))
                return failure or _Reply(200, {"ok": True}, {})
            if path.startswith("/api/") and len(path) > len("/api/"):
                method = path.removeprefix("/api/")
                return fake._api(Call(method, body, headers, _token(headers, body)))
            return _Reply(404, {"ok": False, "error": f"no route {path}"}, {})

        def _send(self, reply: _Reply) -> None:
            if reply.text is not None:
                data, ctype = reply.text.encode(), "text/plain; charset=utf-8"
            else:
                data, ctype = json.dumps(reply.payload).encode(), "application/json; charset=utf-8"
            self.send_response(reply.status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            # One request per connection: nothing is left open when the test ends.
            self.send_header("Connection", "close")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

    return Handler


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A running FakeSlack for one test. A conftest re-exports it with
    `from tests.fake_slack import fake_slack  # noqa: F401`; inside a test module, where ruff
    would flag the parameter as a redefinition, write the three-line `with FakeSlack()` fixture."""
    with FakeSlack() as fake:
        yield fake
