"""SOAP 1.2 envelopes, faults and WS-Security UsernameToken checks as ONVIF devices speak them.

Replies are string templates rather than a SOAP stack: a farm of a thousand cameras must
answer in microseconds, and the client under test (zeep) parses them against the real WSDLs.
"""

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

from lxml import etree

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "trc": "http://www.onvif.org/ver10/recording/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "tns1": "http://www.onvif.org/ver10/topics",
    "ter": "http://www.onvif.org/ver10/error",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
}
_XMLNS = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items() if p not in ("wsse", "wsu"))
PASSWORD_DIGEST = "#PasswordDigest"
# How far a token's Created may be from the camera's own clock (typical firmware: a few minutes).
TOKEN_WINDOW = timedelta(minutes=5)
_DURATION = re.compile(r"^P(?:T)?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope {_XMLNS}><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def fault(subcode: str, reason: str, *, code: str = "s:Sender", detail: str = "") -> bytes:
    """A SOAP 1.2 fault; `subcode` like `ter:NotAuthorized`."""
    return envelope(
        f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en">{escape(reason)}</s:Text></s:Reason>{detail}</s:Fault>'
    )


def xml_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def text(value: object) -> str:
    return escape(str(value))


class Request:
    """A parsed SOAP request: its operation, its body element and its UsernameToken if any."""

    __slots__ = ("operation", "namespace", "body", "token")

    def __init__(self, raw: bytes) -> None:
        root = etree.fromstring(raw, parser=_PARSER)
        body = root.find("s:Body", NS)
        if body is None or len(body) == 0:
            raise ValueError("no SOAP body")
        op = body[0]
        q = etree.QName(op)
        self.operation, self.namespace, self.body = q.localname, q.namespace, op
        self.token = root.find("s:Header/wsse:Security/wsse:UsernameToken", NS)

    def find(self, path: str) -> str | None:
        el = self.body.find(path, NS)
        return el.text if el is not None else None


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def check_token(token: etree._Element, username: str, password: str, camera_now: datetime) -> bool:
    """WS-Security UsernameToken (digest or text) against the camera's credentials and clock."""
    user = token.findtext("wsse:Username", namespaces=NS)
    pw = token.find("wsse:Password", NS)
    if user != username or pw is None or pw.text is None:
        return False
    if not (pw.get("Type") or "").endswith(PASSWORD_DIGEST):
        return hmac.compare_digest(pw.text.encode(), password.encode())
    nonce = token.findtext("wsse:Nonce", namespaces=NS) or ""
    created = token.findtext("wsu:Created", namespaces=NS) or ""
    try:
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
        raw_nonce = base64.b64decode(nonce)
    except ValueError:
        return False
    if created_at.tzinfo is None or abs(created_at - camera_now) > TOKEN_WINDOW:
        # The clock check is what makes a camera years off refuse an uncompensated client.
        return False
    digest = base64.b64encode(hashlib.sha1(raw_nonce + created.encode() + password.encode()).digest())
    return hmac.compare_digest(digest, pw.text.encode())


def duration_s(value: str | None, default: float) -> float:
    """xs:duration like PT10S / PT1M (the subset ONVIF clients send)."""
    if not value:
        return default
    m = _DURATION.match(value.strip())
    if not m:
        return default
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s
