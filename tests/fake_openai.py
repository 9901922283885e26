"""A deterministic fake OpenAI-compatible chat server on 127.0.0.1, for driving the real openai
client: it records every request body it receives and answers as each test scripts it."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def answer_json(answer: str, *, language: str = "en", supported: float = 0.9,
                missing_information: bool = False) -> str:
    """The assistant content of a well-behaved model."""
    return json.dumps({"answer": answer, "language": language, "supported": supported,
                       "missing_information": missing_information})


@dataclass
class Reply:
    """One scripted answer: a chat completion with `content`, or an error `status`."""

    content: str | None = None
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 20
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    """State shared with the handler threads. Script replies with `script(...)` (consumed in
    order) and/or `respond_with(fn)` (called for every request once the script is used up)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.base_url = ""
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Reply] = deque()
        self._responder: Responder = lambda _body: Reply(answer_json("ok"))
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def respond_with(self, responder: Responder) -> None:
        self._responder = responder

    def user_prompts(self) -> list[str]:
        return [m["content"] for body in self.requests for m in body["messages"]
                if m["role"] == "user"]

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._script.popleft() if self._script else None
        return scripted if scripted is not None else self._responder(body)

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": reply.content}}],
        "usage": {"prompt_tokens": reply.prompt_tokens,
                  "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


def _handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(raw)
            state.auth_headers.append(self.headers.get("Authorization", ""))
            reply = state._next(body)
            try:
                if reply.delay_s and state._stop.wait(reply.delay_s):
                    return  # server shutting down
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": f"scripted {reply.status}",
                                                        "type": "server_error"}},
                               reply.headers)
                else:
                    self._send(200, _completion(body, reply), reply.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)
            finally:
                state._done()

        def _send(self, status: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def running_fake_openai() -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on a free loopback port; `state.base_url` ends in /v1."""
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        state._stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
