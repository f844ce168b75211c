"""Refuses request content PostgreSQL cannot store or a log line must not hold, before any route runs.

A NUL reaching a query parameter made psycopg fail deep inside a route (a 500 that also dropped
the keep-alive connection); a CR or LF in a path can forge a line of the access log. So, as 400:

* the percent-decoded path and query string (names and values) with a C0 control character
  (U+0000..U+001F) or DEL. TAB is refused there too: no parameter of this API (ids, times,
  cursors, the NGSI-LD `q` and `attrs`) is free text in which a TAB means anything.
* a JSON body (what FastAPI parses as JSON: no Content-Type, `application/json`, `application/*+json`)
  with a raw NUL byte, a `\\u0000` escape or a lone surrogate (`\\ud800`) in any string or key,
  or nested deeper than 64 levels (Python's parser would fail with a RecursionError, a 500).
  Other escaped control characters (TAB, CR, LF in a comment) are legitimate text and stored as is.

Other bodies (multipart uploads of audio files) are passed through untouched. Errors are SPEC §6's
`{"error": ...}`, and NGSI-LD ProblemDetails under `/ngsi-ld/`.
"""

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import problems
from gateway.errors import error_response

# C0 controls and DEL: never in a path or a query parameter.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What PostgreSQL text and jsonb refuse: NUL, and UTF-16 surrogates (left alone by json.loads
# only when unpaired, since a valid pair decodes to one code point).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
MAX_DEPTH = 64


class BadInput(ValueError):
    """What was refused and where, for the 400 message."""


def _describe(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def check_path(path: str) -> None:
    m = _CONTROL.search(path)
    if m:
        raise BadInput(f"the path contains the control character {_describe(m[0])}")


def check_query(query_string: bytes) -> None:
    text = query_string.decode("latin-1")
    if "%" not in text and not _CONTROL.search(text):
        return
    for part in text.split("&"):
        name, _, value = part.partition("=")
        name_text = unquote(name.replace("+", " "), encoding="utf-8", errors="replace")
        for label, item in ((None, name_text), (name_text, unquote_plus(value, errors="replace"))):
            m = _CONTROL.search(item)
            if m:
                where = f"query parameter {label!r}" if label is not None else "a query parameter name"
                raise BadInput(f"{where} contains the control character {_describe(m[0])}")


def _strings(doc: Any) -> Iterator[tuple[str, str]]:
    """Every string and key of a JSON document with its dotted location, iteratively."""
    stack: list[tuple[str, Any, int]] = [("", doc, 0)]
    while stack:
        where, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInput(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, str):
            yield where, node
        elif isinstance(node, dict):
            for k, v in node.items():
                inner = f"{where}.{k}" if where else str(k)
                yield inner, k
                stack.append((inner, v, depth + 1))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", v, depth + 1) for i, v in enumerate(node))


def check_json(body: bytes) -> None:
    if b"\x00" in body:
        raise BadInput("the JSON body contains a NUL byte")
    if not body.strip():
        return
    try:
        doc = json.loads(body)
    except RecursionError as err:
        raise BadInput(f"the JSON body is nested deeper than {MAX_DEPTH} levels") from err
    except ValueError:
        return  # not JSON: the route's parser answers that (422)
    for where, text in _strings(doc):
        m = _UNSTORABLE.search(text)
        if m:
            what = "a NUL (\\u0000)" if m[0] == "\x00" else f"a lone surrogate (\\u{ord(m[0]):04x})"
            raise BadInput(f"{where or 'the JSON body'} contains {what}, which cannot be stored")


def _parsed_as_json(scope: Scope) -> bool:
    """Mirrors FastAPI: a body is JSON without a Content-Type or with application/json or */*+json."""
    value = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-type"), None)
    if value is None:
        return True
    media = value.decode("latin-1").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class InputGuard:
    """ASGI middleware: 400 for control characters in the path or query, unstorable text in JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope.get("path", ""))
            check_query(scope.get("query_string", b""))
        except BadInput as err:
            await self._refuse(scope, receive, send, str(err))
            return
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        if not _parsed_as_json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body, more = b"", True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            check_json(body)
        except BadInput as err:
            await self._refuse(scope, receive, send, str(err))
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        if problems.applies(scope.get("path", "")):
            response = problems.response(400, message)
        else:
            response = error_response(400, "bad_request", message)
        await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Adds the guard as the innermost middleware: the body limit, the login limiter and the audit of
    sharing calls (all outside it) see its 400s like any other answer."""
    app.user_middleware.append(Middleware(InputGuard))
