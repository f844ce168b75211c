"""A province's LGSP on loopback: an OAuth2 token endpoint (client credentials) and a push
receiver that checks every request as an LGSP would and records what it took."""

import base64
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLIENT_ID = "ioc-thoai-giang"
CLIENT_SECRET = "s3cret-Đúng"  # non-ASCII on purpose: Basic auth of a UTF-8 secret
SCOPE = "ioc"
LGSP_TOKEN = "lgsp-access-7f1c"


class Lgsp:
    """Token endpoint at /token, receiver at /push.

    `answers` is a list of statuses given to the next pushes, one each, before the normal answer
    (200); `"hang"` answers nothing for `hang_s`. `down` makes every push a 503. Every request is
    recorded (`tokens_issued`, `pushes`); `taken` holds each Idempotency-Key's body once, in the
    order first taken (what a receiver that drops retries keeps).
    """

    def __init__(self, expires_in: int | None = 3600, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.expires_in = expires_in
        self.tokens_issued: list[dict[str, Any]] = []
        self.valid: set[str] = set()
        self.pushes: list[dict[str, Any]] = []
        self.taken: dict[str, dict[str, Any]] = {}
        self.answers: list[int | str] = []
        self.down = False
        self.hang_s = 3.0
        self.token_status = 200
        self.problems: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path == "/token":
                    status, doc = outer._token(headers, body)
                elif self.path == "/push":
                    status, doc = outer._push(headers, body)
                else:
                    status, doc = 404, {"error": "not found"}
                if status == "hang":
                    time.sleep(outer.hang_s)
                    status, doc = 200, {"ok": True}
                data = json.dumps(doc).encode()
                self.send_response(int(status))
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[Any, dict[str, Any]]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        with self.lock:
            self.tokens_issued.append({"headers": headers, "form": form, "at": time.monotonic()})
            if self.token_status != 200:
                return self.token_status, {"error": "temporarily_unavailable"}
            if headers.get("authorization") != expected:
                return 401, {"error": "invalid_client"}
            if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
                return 400, {"error": "invalid_request"}
            token = f"tok-{len(self.tokens_issued)}"
            self.valid.add(token)
        doc: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        return 200, doc

    def _push(self, headers: dict[str, str], body: bytes) -> tuple[Any, dict[str, Any]]:
        with self.lock:
            rec = {"headers": headers, "body": body, "at": time.monotonic()}
            self.pushes.append(rec)
            auth = headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.valid:
                return 401, {"error": "invalid_token"}
            if headers.get("lgspaccesstoken") != LGSP_TOKEN:
                self.problems.append("lgspaccesstoken missing or wrong")
                return 403, {"error": "lgspaccesstoken"}
            if headers.get("content-type") != "application/json" or not headers.get("idempotency-key"):
                self.problems.append(f"bad headers {headers}")
                return 400, {"error": "headers"}
            try:
                doc = json.loads(body)
            except ValueError:
                self.problems.append("body is not JSON")
                return 400, {"error": "json"}
            if set(doc) - {"type", "items", "period"} or doc.get("type") not in (
                "changes",
                "alerts",
                "daily_report",
            ):
                self.problems.append(f"bad body shape {sorted(doc)}")
                return 422, {"error": "shape"}
            if self.down:
                return 503, {"error": "maintenance"}
            if self.answers:
                answer = self.answers.pop(0)
                if answer != "hang":
                    return answer, {"error": f"scripted {answer}"}
                self.taken.setdefault(headers["idempotency-key"], doc)
                return "hang", {}
            self.taken.setdefault(headers["idempotency-key"], doc)
            return 200, {"ok": True}

    def revoke_tokens(self) -> None:
        with self.lock:
            self.valid.clear()

    def items(self, kind: str = "changes") -> list[dict[str, Any]]:
        with self.lock:
            return [it for doc in self.taken.values() if doc["type"] == kind for it in doc["items"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def lgsp(**kw: Any) -> Iterator[Lgsp]:
    r = Lgsp(**kw)
    try:
        yield r
    finally:
        r.close()


def upstreams_yaml(lgsp: Lgsp, **extra: Any) -> str:
    """An IOC_UPSTREAMS_FILE for this receiver, as SPEC §10 writes one."""
    lines = [
        "upstreams:",
        "  - id: lgsp-an-giang",
        f'    url: "{lgsp.url}/push"',
        f'    oauth2: {{token_url: "{lgsp.url}/token", client_id: "{CLIENT_ID}",'
        f' client_secret: "${{IOC_TEST_LGSP_SECRET}}", scope: "{SCOPE}"}}',
        f'    headers: {{lgspaccesstoken: "{LGSP_TOKEN}"}}',
        "    communes: [thoai-giang]",
    ]
    extra.setdefault("send", "[changes, alerts]")
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"
