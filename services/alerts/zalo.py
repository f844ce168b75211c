"""Zalo Official Account messages: `zalo://` channel URLs.

    zalo://ACCESS_TOKEN@oa/USER_ID[/USER_ID...]            consultation (CS) message to followers
    zalo://ACCESS_TOKEN@zns/PHONE[/PHONE...]?template_id=N  ZNS template message to phone numbers

Options: `base=URL` replaces the API host (https://openapi.zalo.me for OA,
https://business.openapi.zalo.me for ZNS), e.g. a local receiver in tests or a proxy.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from services.errors import InvalidInput, Unavailable

OA_BASE = "https://openapi.zalo.me"
ZNS_BASE = "https://business.openapi.zalo.me"
# Zalo cuts CS text messages at 2000 characters.
MAX_TEXT = 2000


class ZaloError(Unavailable):
    """Zalo refused or did not take a message."""


@dataclass(frozen=True)
class ZaloTarget:
    mode: str  # "oa" or "zns"
    access_token: str
    recipients: tuple[str, ...]
    base: str
    template_id: str | None = None


def _phone(p: str) -> str:
    digits = "".join(ch for ch in p if ch.isdigit())
    # ZNS wants the international form without '+': 0912... -> 84912...
    return "84" + digits[1:] if digits.startswith("0") else digits


def parse(url: str) -> ZaloTarget:
    parts = urlsplit(url)
    if parts.scheme != "zalo":
        raise InvalidInput(f"not a zalo:// URL: {url[:20]}…")
    token = unquote(parts.username or "")
    mode = (parts.hostname or "").lower()
    recipients = tuple(unquote(p) for p in parts.path.split("/") if p)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if not token:
        raise InvalidInput("zalo:// URL needs the OA access token: zalo://TOKEN@oa/USER_ID")
    if mode not in ("oa", "zns"):
        raise InvalidInput(
            "zalo:// URL host must be oa (CS message) or zns (template): zalo://TOKEN@oa/USER_ID"
        )
    if not recipients:
        raise InvalidInput("zalo:// URL needs at least one recipient (user id or phone) as its path")
    if mode == "zns":
        if not query.get("template_id"):
            raise InvalidInput("zalo://TOKEN@zns/PHONE needs ?template_id=")
        recipients = tuple(_phone(r) for r in recipients)
    base = (query.get("base") or (OA_BASE if mode == "oa" else ZNS_BASE)).rstrip("/")
    return ZaloTarget(mode, token, recipients, base, query.get("template_id"))


def requests(
    t: ZaloTarget, title: str, body: str, data: Mapping[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """(url, JSON body) of each request that delivers a message."""
    if t.mode == "oa":
        text = f"{title}\n{body}"[:MAX_TEXT]
        return [
            (f"{t.base}/v3.0/oa/message/cs", {"recipient": {"user_id": uid}, "message": {"text": text}})
            for uid in t.recipients
        ]
    template_data = {k: str(v) for k, v in data.items() if v is not None}
    return [
        (
            f"{t.base}/message/template",
            {
                "phone": phone,
                "template_id": t.template_id,
                "template_data": template_data,
                "tracking_id": str(data.get("tracking_id", "")),
            },
        )
        for phone in t.recipients
    ]


async def send(
    client: httpx.AsyncClient, t: ZaloTarget, title: str, body: str, data: Mapping[str, Any]
) -> None:
    """Deliver to every recipient; raise ZaloError naming the first failure."""
    for url, payload in requests(t, title, body, data):
        try:
            resp = await client.post(url, json=payload, headers={"access_token": t.access_token})
        except httpx.HTTPError as err:
            raise ZaloError(f"zalo {t.mode}: {type(err).__name__}: {err}") from err
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        # Zalo answers HTTP 200 with {"error": 0} on success and a negative code otherwise.
        code = answer.get("error") if isinstance(answer, dict) else None
        if resp.status_code != 200 or code not in (0, "0"):
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ZaloError(
                f"zalo {t.mode}: HTTP {resp.status_code}, error {code}: {message or resp.text[:200]}"
            )
