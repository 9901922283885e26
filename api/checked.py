"""JSON bodies checked for what parses but cannot be stored or echoed: lone surrogates, bytes
that are not UTF-8, NaN and infinite numbers, absurdly long numbers, nesting too deep.

`"\\ud800"` is valid JSON, yet no UTF-8 encoder (SQLite, PostgreSQL, the tokenizer) can write
it, so without this check such a string got as far as the database and ended in a 500; `1e999`
parses as infinity, which even the 422 echoing it cannot serialise. Each is a 422 naming the
problem and where.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# Surrogates can only arrive as \\uD800-\\uDFFF escapes (UTF-8 bytes cannot encode them), so
# bodies without one skip the walk: the answer path stays as cheap as before.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _bad_string(value: Any, path: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...],
                                                                         str] | None:
    """The path and text of the first string (key or value) that is not valid Unicode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, value
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _bad_string(key, path) or _bad_string(item, (*path, key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _bad_string(item, (*path, i))
            if found:
                return found
    return None


# Longer numbers are refused before Python's own 4,300-digit guard turns them into a 400.
MAX_NUMBER_DIGITS = 100


class _Refused(ValueError):
    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


def _float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        # 1e999 reads as infinity, which no JSON answer (not even the 422) can echo back.
        raise _Refused(f"the number {token[:20]}… is out of range", token)
    return value


def _int(token: str) -> int:
    if len(token.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number of {len(token)} digits is too long", token)
    return int(token)


def _constant(token: str) -> Any:
    raise _Refused(f"{token} is not a JSON number", token)


def _loads(text: str) -> Any:
    """json.loads refusing what Python's parser accepts but JSON does not (NaN, Infinity),
    numbers out of range, and nesting too deep to parse, each as a JSONDecodeError."""
    try:
        return json.loads(text, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except _Refused as exc:
        raise json.JSONDecodeError(str(exc), text, max(0, text.find(exc.token))) from None
    except RecursionError:
        raise json.JSONDecodeError("the body is nested too deeply", text, 0) from None


class CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(
                    f"the body is not UTF-8 (byte 0x{body[exc.start]:02x})",
                    body.decode("utf-8", "replace"), exc.start) from None
            value = _loads(text)
            if _SURROGATE_ESCAPE.search(body) is not None:
                found = _bad_string(value)
                if found is not None:
                    where = ".".join(str(p) for p in found[0]) or "the body"
                    # The lone one, not the first escape: an emoji's pair may come before it.
                    lone = next(c for c in found[1] if 0xD800 <= ord(c) <= 0xDFFF)
                    escape = f"\\u{ord(lone):04x}"
                    pos = text.lower().find(escape)
                    raise json.JSONDecodeError(
                        f"{where}: a lone surrogate ({escape}) is not a character; send the "
                        "text as valid UTF-8", text, max(pos, 0))
            self._json = value
        return self._json


class CheckedRoute(APIRoute):
    """An APIRoute whose JSON body goes through `CheckedRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(CheckedRequest(request.scope, request.receive))

        return checked
