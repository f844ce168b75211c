"""Cross-site request forgery: state-changing requests that a browser could send on its own.

The session cookie is SameSite=strict, which keeps other *sites* from using it, but not pages on
another port or subdomain of the same site (issue 13: a `text/plain` POST from another origin
resolved an alert; a form logged the user out). So a POST, PUT, PATCH or DELETE that is not
authenticated by `Authorization: Bearer` (which no page can add to another origin's request
without CORS, closed by default) is answered 403 when:

* its `Origin` (or, without one, its `Referer`) is another origin than the gateway's own (the
  request's Host, `IOC_PUBLIC_URL`) or the allowed ones (`IOC_CORS_ORIGINS`); `Origin: null` too;
* its Content-Type is one a cross-origin page can send without asking (form and text types),
  except multipart uploads on the upload paths from a page proven same-origin by its `Origin`.

Every browser sends `Origin` on cross-origin POSTs; a request with neither header comes from a
program, not a page, and only the content-type rule applies. The dashboard needs no change: it
sends JSON from its own origin.
"""

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import answer

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
# Content types a page may send to any origin without a CORS preflight (Fetch standard).
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    """Refuses (403) state-changing requests that do not come from the gateway's own pages."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: list[str],
        public_url: str | None = None,
        upload_paths: tuple[str, ...] = ("/api/v1/media",),
    ) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}
        if public_url and (own := _origin_of(public_url)):
            self.allowed.add(own)
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE:
            refusal = self.refusal(scope)
            if refusal:
                response = answer(scope["path"], 403, "forbidden", refusal)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused, or None."""
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        scheme, _, token = headers.get(b"authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return None
        host = headers.get(b"host", "").lower()
        origin = headers.get(b"origin")
        if origin is not None:
            if not self._same(origin.strip(), host):
                return f"a request from another origin ({origin.strip()[:100]}) cannot change anything here"
        elif (referer := headers.get(b"referer")) is not None:
            if not self._same(_origin_of(referer) or "null", host):
                return "a request from another page's origin cannot change anything here"
        media = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if media in _FORM_TYPES:
            upload = media == "multipart/form-data" and scope["path"].startswith(self.upload_paths)
            if not (upload and origin is not None):
                return f"send JSON (Content-Type: application/json), not {media}"
        return None

    def _same(self, origin: str, host: str) -> bool:
        o = origin.rstrip("/").lower()
        if o in self.allowed:
            return True
        return bool(host) and o != "null" and urlsplit(o).netloc == host
