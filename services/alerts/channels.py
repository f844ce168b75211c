"""Notification channels: Apprise URLs (mailto://, json://, tgram://, ntfy:// …) and zalo://.

Our one addition to Apprise URLs: `tgram://…?api=URL` replaces Telegram's Bot API base
(https://api.telegram.org/bot), for a self-hosted Bot API server or a test receiver.
"""

import asyncio
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise
import httpx

from services.alerts import zalo
from services.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)
TIMEOUT_S = 15.0

with warnings.catch_warnings():
    # Apprise loads its plugins on first use; the e-mail one imports imghdr, deprecated since
    # Python 3.11. Load them here, once, where the warning can be silenced thread-safely.
    warnings.simplefilter("ignore", DeprecationWarning)
    apprise.Apprise.instantiate("json://localhost")


class DeliveryFailed(Unavailable):
    """A channel did not take a notification (it is retried later)."""


_NOTIFY_TYPE = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
    "resolved": apprise.NotifyType.SUCCESS,
}


def _split_api(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    api = next((v for k, v in query if k == "api"), None)
    rest = [(k, v) for k, v in query if k != "api"]
    return urlunsplit(parts._replace(query=urlencode(rest))), api


def _apprise(url: str) -> Any:
    plain, api = _split_api(url) if url.startswith("tgram://") else (url, None)
    plugin = apprise.Apprise.instantiate(plain)
    if plugin is None:
        raise InvalidInput(f"not a usable Apprise URL: {urlsplit(url).scheme}://…")
    if api:
        plugin.notify_url = api  # type: ignore[attr-defined]  # Telegram's plugin has it
    return plugin


def check(url: str) -> None:
    """Raise InvalidInput unless the URL names a channel we can send to."""
    if url.startswith("zalo://"):
        zalo.parse(url)
    else:
        _apprise(url)


class Channels:
    """Senders for the configured channel URLs, built once and reused."""

    def __init__(self, urls: Mapping[str, str], timeout_s: float = TIMEOUT_S) -> None:
        self.urls = dict(urls)
        self.timeout_s = timeout_s
        self._plugins: dict[str, Any] = {}
        self._http = httpx.AsyncClient(timeout=timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _plugin(self, name: str) -> Any:
        if name not in self._plugins:
            url = self.urls.get(name)
            if url is None:
                raise DeliveryFailed(f"no channel named {name!r} in the alert configuration")
            self._plugins[name] = zalo.parse(url) if url.startswith("zalo://") else _apprise(url)
        return self._plugins[name]

    async def send(self, name: str, title: str, body: str, severity: str, data: Mapping[str, Any]) -> float:
        """Deliver one notification; returns seconds taken; raises DeliveryFailed."""
        started = time.monotonic()
        try:
            target = self._plugin(name)
        except InvalidInput as err:
            raise DeliveryFailed(f"channel {name}: {err.message}") from err
        try:
            async with asyncio.timeout(self.timeout_s):
                if isinstance(target, zalo.ZaloTarget):
                    await zalo.send(self._http, target, title, body, data)
                else:
                    await self._send_apprise(name, target, title, body, severity)
        except TimeoutError as err:
            raise DeliveryFailed(f"channel {name}: no answer in {self.timeout_s:.0f} s") from err
        except zalo.ZaloError as err:
            raise DeliveryFailed(f"channel {name}: {err.message}") from err
        return time.monotonic() - started

    async def _send_apprise(self, name: str, plugin: Any, title: str, body: str, severity: str) -> None:
        def call() -> tuple[bool, str]:
            with apprise.LogCapture(level=logging.WARNING) as captured:
                ok = plugin.notify(
                    body=body,
                    title=title,
                    body_format=apprise.NotifyFormat.TEXT,
                    notify_type=_NOTIFY_TYPE.get(severity, apprise.NotifyType.INFO),
                )
            return bool(ok), captured.getvalue().strip()

        ok, logged = await asyncio.to_thread(call)
        if not ok:
            last = logged.splitlines()[-1] if logged else "apprise reported a failure"
            raise DeliveryFailed(f"channel {name}: {last.split(' - ')[-1]}")
