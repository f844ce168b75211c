"""IOC_UPSTREAMS_FILE (SPEC §10): where the IOC pushes its data, read strictly.

Every problem is reported with its file line, and a file with any problem is refused whole. A
secret (`client_secret`, header values, `client_id`) may be written as `${ENV_NAME}`, replaced
from the environment when the file is read; secrets never appear in a message, a log or a repr.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from services import yaml_limits
from services.errors import InvalidInput

log = logging.getLogger(__name__)

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
STREAMS = ("changes", "alerts", "daily_report")
MAX_BYTES = 1024 * 1024
DEFAULT_DAILY_AT = time(16, 30)
DEFAULT_BATCH = 500
DEFAULT_TIMEOUT_S = 30.0
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 token)
_HHMM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
# Headers the IOC writes itself on every push.
_OWN_HEADERS = {"content-type", "content-length", "idempotency-key", "host", "transfer-encoding"}
_KEYS = {
    "id",
    "url",
    "oauth2",
    "headers",
    "communes",
    "send",
    "daily_at",
    "ca_file",
    "insecure",
    "timeout_s",
    "batch",
}
_OAUTH2_KEYS = {"token_url", "client_id", "client_secret", "scope", "auth"}


@dataclass(frozen=True)
class OAuth2:
    """Client-credentials grant (RFC 6749 §4.4); `auth`: `basic` (HTTP Basic, the default) or `post`
    (client_id and client_secret in the form body)."""

    token_url: str
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    scope: str | None = None
    auth: str = "basic"


@dataclass(frozen=True)
class Upstream:
    """One receiver of pushes, e.g. a province's LGSP."""

    id: str
    url: str
    oauth2: OAuth2 | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    communes: tuple[str, ...] | None = None  # None: every commune
    send: tuple[str, ...] = STREAMS
    daily_at: time = DEFAULT_DAILY_AT
    ca_file: Path | None = None
    insecure: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    batch: int = DEFAULT_BATCH

    @property
    def target(self) -> str:
        return f"upstream:{self.id}"


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []
        self._at: list[int] = []

    def add(self, line: int | None, msg: str) -> None:
        where = f"{self.source}:{line}" if line else self.source
        self.lines.append(f"{where}: {' '.join(msg.splitlines())}")
        self._at.append(line or 0)

    def raise_if_any(self) -> None:
        if self.lines:
            # in file order, whatever order the checks ran in
            self.lines = [t for _, t in sorted(zip(self._at, self.lines, strict=True), key=lambda x: x[0])]
            n = len(self.lines)
            raise InvalidInput(
                f"{n} error{'s' if n > 1 else ''} in {self.source}:\n" + "\n".join(self.lines),
                detail=self.lines,
            )


def _show(value: Any) -> str:
    """A value as it may appear in a message: short, one line."""
    text = repr(value) if isinstance(value, str | int | float | bool) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


class _Map:
    """A YAML mapping node: its values by key (text), and the line of each key."""

    def __init__(self, errors: _Errors, node: yaml.MappingNode, data: dict[Any, Any], what: str) -> None:
        self.line = node.start_mark.line + 1
        self.data = data
        self.lines: dict[str, int] = {}
        for k, _ in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            kline = k.start_mark.line + 1
            if name is None:
                errors.add(kline, f"{what}: a key must be a plain name")
                continue
            self.lines[name] = kline  # a key given twice was refused by yaml_limits.load
        self.nodes = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}

    def at(self, key: str) -> int:
        return self.lines.get(key, self.line)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def unknown(self, errors: _Errors, what: str, allowed: set[str]) -> None:
        for k in self.data:
            if str(k) not in allowed:
                errors.add(
                    self.lines.get(str(k), self.line),
                    f"{what}: unknown field {_show(str(k))} (allowed: {', '.join(sorted(allowed))})",
                )


def _env(errors: _Errors, line: int, what: str, value: Any) -> str | None:
    """Text with `${NAME}` replaced from the environment; None (and an error) when it is not text
    or names an unset variable. The value itself is never quoted (it may be a secret)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        errors.add(line, f"{what} must be text, not {type(value).__name__}")
        return None
    missing = [m.group(1) for m in _ENV.finditer(value) if m.group(1) not in os.environ]
    if missing:
        errors.add(line, f"{what}: environment variable {', '.join(missing)} is not set")
        return None
    out = _ENV.sub(lambda m: os.environ[m.group(1)], value)
    if not out:
        errors.add(line, f"{what} is empty")
        return None
    if any(c in out for c in "\r\n\x00"):
        errors.add(line, f"{what} holds a line break or NUL character")
        return None
    return out


def _url(errors: _Errors, line: int, what: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        errors.add(line, f"{what} is required: an http:// or https:// URL")
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as err:
        errors.add(line, f"{what} is not a URL: {err}")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add(line, f"{what} must be an http:// or https:// URL with a host")
        return None
    if any(c.isspace() for c in value) or "\x00" in value:
        errors.add(line, f"{what} must not hold spaces")
        return None
    return value


def _daily_at(errors: _Errors, line: int, value: Any) -> time:
    if value is None:
        return DEFAULT_DAILY_AT
    # Unquoted, YAML 1.1 reads 16:30 as the base-60 number 990: take it as meant.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str) and (m := _HHMM.fullmatch(value.strip())):
        return time(int(m.group(1)), int(m.group(2)))
    errors.add(line, f'daily_at {_show(value)} must be a local time HH:MM, e.g. "16:30"')
    return DEFAULT_DAILY_AT


def _oauth2(errors: _Errors, m: _Map, what: str) -> OAuth2 | None:
    m.unknown(errors, what, _OAUTH2_KEYS)
    token_url = _url(errors, m.at("token_url"), f"{what}.token_url", m.get("token_url"))
    client_id = secret = None
    for key in ("client_id", "client_secret"):
        if m.get(key) is None:
            errors.add(m.line, f"{what}.{key} is required")
            continue
        value = _env(errors, m.at(key), f"{what}.{key}", m.get(key))
        if key == "client_id":
            client_id = value
        else:
            secret = value
    scope = m.get("scope")
    if scope is not None and (not isinstance(scope, str) or any(c in scope for c in "\r\n\x00")):
        errors.add(m.at("scope"), f"{what}.scope must be text (space-separated scopes)")
        scope = None
    auth = m.get("auth") if "auth" in m.data else "basic"
    if auth not in ("basic", "post"):
        errors.add(m.at("auth"), f"{what}.auth {_show(auth)} must be basic or post")
    if token_url is None or client_id is None or secret is None:
        return None
    return OAuth2(token_url, client_id, secret, scope or None, auth if auth in ("basic", "post") else "basic")


def _upstream(errors: _Errors, m: _Map, base: Path | None) -> Upstream | None:
    uid = m.get("id")
    if not isinstance(uid, str) or not ID_RE.fullmatch(uid):
        errors.add(m.at("id"), f"id {_show(uid)} is required and must match [a-z0-9][a-z0-9-]{{0,62}}")
        uid = None
    what = f"upstream {uid}" if uid else "upstream"
    m.unknown(errors, what, _KEYS)
    url = _url(errors, m.at("url"), f"{what}: url", m.get("url"))

    oauth2 = None
    if "oauth2" in m.data:
        node = m.nodes.get("oauth2")
        if isinstance(node, yaml.MappingNode) and isinstance(m.get("oauth2"), dict):
            oauth2 = _oauth2(
                errors, _Map(errors, node, m.get("oauth2"), f"{what}: oauth2"), f"{what}: oauth2"
            )
        else:
            errors.add(
                m.at("oauth2"), f"{what}: oauth2 must be a mapping {{token_url, client_id, client_secret}}"
            )

    headers: list[tuple[str, str]] = []
    if "headers" in m.data:
        node = m.nodes.get("headers")
        if isinstance(node, yaml.MappingNode) and isinstance(m.get("headers"), dict):
            hm = _Map(errors, node, m.get("headers"), f"{what}: headers")
            for name, value in hm.data.items():
                hline = hm.at(str(name))
                if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                    errors.add(
                        hline, f"{what}: header name {_show(str(name))} is not a valid HTTP header name"
                    )
                    continue
                if name.lower() in _OWN_HEADERS or (name.lower() == "authorization" and "oauth2" in m.data):
                    errors.add(hline, f"{what}: header {name} is set by the IOC itself")
                    continue
                text = _env(errors, hline, f"{what}: header {name}", value)
                if text is not None:
                    headers.append((name, text))
        else:
            errors.add(m.at("headers"), f"{what}: headers must be a mapping name: value")

    communes: tuple[str, ...] | None = None
    raw = m.get("communes")
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            errors.add(
                m.at("communes"), f"{what}: communes must be a list of commune ids (leave it out for all)"
            )
        else:
            bad = [c for c in raw if not isinstance(c, str) or not ID_RE.fullmatch(c)]
            if bad:
                errors.add(m.at("communes"), f"{what}: {_show(bad[0])} is not a commune id")
            else:
                communes = tuple(dict.fromkeys(raw))

    send: tuple[str, ...] = STREAMS
    raw = m.get("send")
    if "send" in m.data:
        if not isinstance(raw, list) or not raw:
            errors.add(m.at("send"), f"{what}: send must be a list of {', '.join(STREAMS)}")
        else:
            bad = [s for s in raw if not isinstance(s, str) or s not in STREAMS]
            if bad:
                errors.add(m.at("send"), f"{what}: send {_show(bad[0])} is not one of {', '.join(STREAMS)}")
            else:
                send = tuple(dict.fromkeys(raw))

    daily_at = _daily_at(errors, m.at("daily_at"), m.get("daily_at"))

    ca_file = None
    raw = m.get("ca_file")
    if raw is not None:
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            errors.add(m.at("ca_file"), f"{what}: ca_file must be a path to a PEM file")
        else:
            path = Path(raw) if Path(raw).is_absolute() or base is None else base / raw
            if not path.is_file():
                errors.add(m.at("ca_file"), f"{what}: ca_file {str(path)!r} does not exist")
            else:
                ca_file = path

    insecure = m.get("insecure") if "insecure" in m.data else False
    if not isinstance(insecure, bool):
        errors.add(m.at("insecure"), f"{what}: insecure must be true or false")
        insecure = False
    if insecure and ca_file is not None:
        errors.add(m.at("insecure"), f"{what}: give either ca_file or insecure: true, not both")

    timeout_s = _number(
        errors, m.at("timeout_s"), f"{what}: timeout_s", m.get("timeout_s"), DEFAULT_TIMEOUT_S, 1, 300
    )
    batch = _number(
        errors, m.at("batch"), f"{what}: batch", m.get("batch"), DEFAULT_BATCH, 1, 10000, whole=True
    )

    if uid is None or url is None or ("oauth2" in m.data and oauth2 is None):
        return None
    return Upstream(
        uid,
        url,
        oauth2,
        tuple(headers),
        communes,
        send,
        daily_at,
        ca_file,
        insecure,
        timeout_s,
        int(batch),
    )


def _number(
    errors: _Errors,
    line: int,
    what: str,
    value: Any,
    default: float,
    lo: float,
    hi: float,
    *,
    whole: bool = False,
) -> float:
    if value is None:
        return default
    ok = isinstance(value, int | float) and not isinstance(value, bool) and lo <= value <= hi
    if ok and whole and not float(value).is_integer():
        ok = False
    if not ok:
        errors.add(
            line, f"{what} {_show(value)} must be a {'whole ' if whole else ''}number from {lo:g} to {hi:g}"
        )
        return default
    return float(value)


def parse(text: str, source: str = "IOC_UPSTREAMS_FILE", base: Path | None = None) -> tuple[Upstream, ...]:
    """The upstreams of a file's text; InvalidInput listing every problem with its line."""
    errors = _Errors(source)
    try:
        doc = yaml_limits.load(text, yaml_limits.Limits(max_bytes=MAX_BYTES, max_nodes=100_000, max_depth=16))
    except yaml_limits.YamlRefused as err:
        errors.add(err.line, err.message)
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None)
        if isinstance(err, yaml.reader.ReaderError):
            line = text.count("\n", 0, err.position) + 1
            problem = f"the character U+{ord(err.character) if isinstance(err.character, str) else err.character:04X} is not allowed"
        errors.add(line, f"not valid YAML: {problem}" if problem else "not valid YAML")
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    if doc.node is None:
        return ()
    if not isinstance(doc.node, yaml.MappingNode) or not isinstance(doc.data, dict):
        errors.add(doc.node.start_mark.line + 1, "the file must be a mapping with an upstreams: list")
        errors.raise_if_any()
    top = _Map(errors, doc.node, doc.data, "top level")  # type: ignore[arg-type]
    top.unknown(errors, "top level", {"upstreams"})
    raw = top.get("upstreams")
    node = top.nodes.get("upstreams")
    out: list[Upstream] = []
    if raw is None:
        pass
    elif not isinstance(raw, list) or not isinstance(node, yaml.SequenceNode) or len(node.value) != len(raw):
        errors.add(top.at("upstreams"), "upstreams must be a list of mappings")
    else:
        seen: dict[str, int] = {}
        for item, inode in zip(raw, node.value, strict=True):
            line = inode.start_mark.line + 1
            if not isinstance(item, dict) or not isinstance(inode, yaml.MappingNode):
                errors.add(line, "an upstream must be a mapping {id, url, ...}")
                continue
            up = _upstream(errors, _Map(errors, inode, item, "upstream"), base)
            if up is None:
                continue
            if up.id in seen:
                errors.add(line, f"upstream {up.id} is given twice (first on line {seen[up.id]})")
                continue
            seen[up.id] = line
            out.append(up)
    errors.raise_if_any()
    return tuple(out)


def load_file(path: Path | None) -> tuple[Upstream, ...]:
    """The upstreams of IOC_UPSTREAMS_FILE (none when it is unset)."""
    if path is None:
        return ()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror or err}") from err
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{path}: larger than {yaml_limits.size(MAX_BYTES)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InvalidInput(f"{path}:{line}: not UTF-8; save the file as UTF-8") from err
    ups = parse(text, str(path), path.parent)
    for up in ups:
        if up.insecure:
            log.warning("upstream %s: TLS certificates are NOT verified (insecure: true)", up.id)
        elif urlsplit(up.url).scheme == "http" and urlsplit(up.url).hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            log.warning("upstream %s: pushes go over plain http://, unencrypted", up.id)
    return ups
