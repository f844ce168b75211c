"""Reading registry files (YAML or CSV, SPEC §3) into a validated `Registry`.

Every problem is reported with its file line; a file with any bad row is rejected whole,
so an import never leaves a half-applied registry behind.
"""

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services import yaml_limits
from services.errors import InvalidInput
from services.models import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_POLL_S,
    KINDS,
    Commune,
    Device,
    Onvif,
    Registry,
    Village,
)
from services.sources import profiles as source_profiles
from services.sources import spec as source_spec
from services.sources.model import Broker

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
CSV_COLUMNS = (
    "commune",
    "id",
    "kind",
    "village",
    "name",
    "lat",
    "lon",
    "parent",
    "heartbeat_s",
    "onvif_host",
    "onvif_port",
    "onvif_username",
    "onvif_password",
    "onvif_poll_s",
    # optional (files without it still import): how the device is heard, as a URL (services.sources.spec)
    "source",
    # optional: the former commune (before the 2025 reform) of the device's village, by name
    "former_commune",
)
_COMMUNE_KEYS = {"id", "name", "district", "province", "village_term"}
_VILLAGE_KEYS = {"id", "name", "former_commune"}
_DEVICE_KEYS = {"id", "kind", "village", "name", "lat", "lon", "parent", "heartbeat_s", "onvif", "source"}
_REQUIRED_COLUMNS = ("commune", "id", "kind")
_ONVIF_KEYS = {"host", "port", "username", "password", "path", "poll_s"}


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, line: int | None, msg: str) -> None:
        where = f"{self.source}:{line}" if line else self.source
        # one error a line, whatever a message quotes
        self.lines.append(f"{where}: {' '.join(msg.splitlines())}")

    def raise_if_any(self) -> None:
        if self.lines:
            n = len(self.lines)
            raise InvalidInput(
                f"{n} error{'s' if n > 1 else ''} in {self.source}; nothing imported:\n"
                + "\n".join(self.lines),
                detail=self.lines,
            )


# PostgreSQL's text holds neither NUL nor a lone surrogate (YAML's "\0" and "\ud800" escapes make them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(value: str) -> str | None:
    m = _UNSTORABLE.search(value)
    if m is None:
        return None
    what = "a NUL character" if m.group() == "\x00" else "a lone surrogate"
    return f"text with {what} (U+{ord(m.group()):04X}) cannot be stored: {value[:40]!r}"


def _unstorable_scalars(root: yaml.Node | None) -> Iterator[tuple[int, str]]:
    """Every scalar (keys too) whose text PostgreSQL refuses, with its line; aliases walked once."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if msg := _unstorable(node.value):
                yield node.start_mark.line + 1, msg
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(x for pair in reversed(node.value) for x in reversed(pair))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _former_commune(errors: _Errors, line: int | None, value: Any) -> str | None:
    """A village's former commune: a name as people write it ("Xã Thoại Giang"), at most 200 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add(line, f"former_commune must be the former commune's name (text), not {value!r}")
        return None
    if len(value.strip()) > 200:
        errors.add(line, "former_commune is a name: at most 200 characters")
        return None
    return value.strip()


def _check_id(errors: _Errors, line: int | None, what: str, value: Any) -> str | None:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        errors.add(line, f"{what} {value!r} must match [a-z0-9][a-z0-9-]{{0,62}}")
        return None
    return value


def _number(errors: _Errors, line: int | None, what: str, value: Any, lo: float, hi: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        errors.add(line, f"{what} {value!r} is not a number")
        return None
    if isinstance(value, bool) or not lo <= x <= hi:
        errors.add(line, f"{what} {value!r} must be between {lo} and {hi}")
        return None
    return x


def _posint(errors: _Errors, line: int | None, what: str, value: Any, default: int, hi: int = 86400) -> int:
    if value is None or value == "":
        return default
    try:
        x = int(str(value))
    except ValueError:
        x = -1
    if isinstance(value, bool) or not 0 < x <= hi:
        errors.add(line, f"{what} {value!r} must be a whole number from 1 to {hi}")
        return default
    return x


def _unknown_keys(
    errors: _Errors, line: int | None, what: str, row: dict[str, Any], allowed: set[str]
) -> None:
    # keys are whatever YAML made of them (numbers, booleans, None): compare and show them as text
    extra = sorted(str(k) for k in set(row) - allowed)
    if extra:
        errors.add(
            line, f"unknown {what} field(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


@dataclass
class _Sources:
    """What checking `source` needs: the profiles known to the file, and where secrets go."""

    profiles: dict[str, Any]
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)


def _catalogue(errors: _Errors, profiles_dir: Path | None) -> dict[str, Any]:
    try:
        return source_profiles.catalogue(profiles_dir)
    except source_profiles.ProfileError as err:
        for msg in err.errors:
            errors.add(None, msg)
        return {}


def _profiles_dir() -> Path | None:
    return source_profiles.env_dir()


def _source(
    errors: _Errors, line: int | None, dev_id: str | None, kind: Any, spec: Any, ctx: _Sources | None
) -> Any:
    if spec is None or spec == "":
        return None
    if ctx is None or dev_id is None or kind not in KINDS:
        return None
    if isinstance(spec, str):
        src, secrets, problems = source_spec.parse_url(spec, device_id=dev_id, kind=kind)
    else:
        src, secrets, problems = source_spec.parse(spec, device_id=dev_id, kind=kind)
    for msg in problems:
        errors.add(line, msg)
    if src is None:
        return None
    profile_name = getattr(src, "profile", None)
    profile = ctx.profiles.get(profile_name) if profile_name else None
    if profile is not None:
        if src.kind == "mqtt" and profile.mqtt is None:
            errors.add(line, f"profile {profile.name} has no mqtt: section")
        if src.kind == "snmp" and profile.snmp is None:
            errors.add(line, f"profile {profile.name} has no snmp: section")
    if secrets:
        ctx.secrets[dev_id] = secrets
    return src


def _device(
    errors: _Errors,
    line: int | None,
    commune_id: str,
    row: dict[str, Any],
    passwords: dict[str, str],
    sources: _Sources | None = None,
) -> Device | None:
    n0 = len(errors.lines)
    dev_id = _check_id(errors, line, "device id", row.get("id"))
    kind = row.get("kind")
    if kind not in KINDS:
        errors.add(line, f"kind {kind!r} must be one of {', '.join(KINDS)}")
    village = row.get("village") or None
    if village is not None:
        _check_id(errors, line, "village", village)
    parent = row.get("parent") or None
    if parent is not None:
        _check_id(errors, line, "parent", parent)
        if parent == dev_id:
            errors.add(line, f"device {dev_id} cannot be its own parent")
    lat = _number(errors, line, "lat", row.get("lat"), -90, 90)
    lon = _number(errors, line, "lon", row.get("lon"), -180, 180)
    heartbeat_s = _posint(errors, line, "heartbeat_s", row.get("heartbeat_s"), DEFAULT_HEARTBEAT_S)
    name = row.get("name")
    if name is not None and not isinstance(name, str):
        name = str(name)
    onvif = None
    spec = row.get("onvif")
    if spec is not None:
        if not isinstance(spec, dict):
            errors.add(line, "onvif must be a mapping")
        else:
            _unknown_keys(errors, line, "onvif", spec, _ONVIF_KEYS)
            host = spec.get("host")
            if not isinstance(host, str) or not host:
                errors.add(line, "onvif.host is required")
            if kind != "camera":
                errors.add(line, f"onvif settings are for cameras, not {kind!r}")
            port = _posint(errors, line, "onvif.port", spec.get("port"), 80, 65535)
            poll_s = _posint(errors, line, "onvif.poll_s", spec.get("poll_s"), DEFAULT_POLL_S)
            username = spec.get("username")
            path = spec.get("path") or "/onvif/device_service"
            if not isinstance(path, str) or not path.startswith("/"):
                errors.add(line, f"onvif.path {path!r} must start with /")
            password = spec.get("password")
            if password is not None and dev_id:
                passwords[dev_id] = str(password)
            onvif = Onvif(str(host), port, None if username is None else str(username), str(path), poll_s)
    if row.get("source") not in (None, "") and onvif is not None:
        errors.add(line, "a device has onvif or source, not both")
    source = _source(errors, line, dev_id, kind, row.get("source"), sources)
    if len(errors.lines) > n0 or dev_id is None:
        return None
    return Device(
        dev_id, commune_id, str(kind), village, name, lat, lon, parent, heartbeat_s, onvif, None, source
    )


def _brokers(errors: _Errors, rows: Any, lines: list[int]) -> tuple[list[Broker], dict[str, str]]:
    out: list[Broker] = []
    passwords: dict[str, str] = {}
    if rows is None:
        return out, passwords
    if not isinstance(rows, list):
        errors.add(lines[0] if lines else 1, "brokers must be a list of {id, url, client_id}")
        return out, passwords
    for j, row in enumerate(rows):
        line = lines[j] if j < len(lines) else None
        broker, password, problems = source_spec.parse_broker(row)
        for msg in problems:
            errors.add(line, msg)
        if broker is None:
            continue
        if any(b.id == broker.id for b in out):
            errors.add(line, f"broker id {broker.id} appears twice")
            continue
        out.append(broker)
        if password is not None:
            passwords[broker.id] = password
    return out, passwords


def _file_profiles(errors: _Errors, doc: Any, node: Any) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        errors.add(
            node.start_mark.line + 1 if node is not None else 1,
            "profiles must be a mapping of name -> profile",
        )
        return {}
    key_lines = {}
    if isinstance(node, yaml.MappingNode):
        key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    out = {}
    for name, body in doc.items():
        try:
            out[name] = source_profiles.parse(str(name), body)
        except source_profiles.ProfileError as err:
            for msg in err.errors:
                errors.add(key_lines.get(name), msg)
    return out


def _check_source_refs(errors: _Errors, reg: Registry, lines: dict[str, int | None]) -> None:
    """References the file alone decides: brokers it defines are known; others are checked on import."""
    for d in reg.devices:
        broker = getattr(d.source, "broker", None)
        if broker is not None and reg.brokers and not any(b.id == broker for b in reg.brokers):
            known = ", ".join(b.id for b in reg.brokers)
            errors.add(lines.get(d.id), f"unknown broker {broker!r} (this file defines {known})")


def _cross_check(errors: _Errors, reg: Registry, lines: dict[str, int | None]) -> None:
    seen: set[str] = set()
    for d in reg.devices:
        if d.id in seen:
            errors.add(lines.get(d.id), f"device id {d.id} appears twice")
        seen.add(d.id)


_FROM_ENV: Any = object()


def _listed(errors: _Errors, line: int, what: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(line, f"{what} must be a list")
        return []
    return value


def parse_yaml(text: str, source: str = "registry", profiles_dir: Path | None = _FROM_ENV) -> Registry:
    errors = _Errors(source)
    try:
        loaded = yaml_limits.load(text)
    except yaml_limits.YamlRefused as err:
        errors.add(err.line or 1, err.message)
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            line = mark.line + 1
        else:  # a ReaderError (a control character) knows only its offset in the text
            line = text.count("\n", 0, getattr(err, "position", 0)) + 1
        errors.add(line, f"not valid YAML: {getattr(err, 'problem', None) or str(err).splitlines()[0]}")
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    root_node, doc = loaded.node, loaded.data
    for line, msg in _unstorable_scalars(root_node):
        errors.add(line, msg)
    if not isinstance(doc, dict):
        errors.add(1, "a registry file is a mapping with commune, villages and devices")
        errors.raise_if_any()

    def node_lines(key: str, parent: Any) -> list[int]:
        if parent is None or not isinstance(parent, yaml.MappingNode):
            return []
        for k, v in parent.value:
            if k.value == key and isinstance(v, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in v.value]
        return []

    if "communes" in doc:
        blocks = doc["communes"]
        if not isinstance(blocks, list):
            errors.add(1, "communes must be a list")
            errors.raise_if_any()
        block_nodes = []
        for k, v in root_node.value if root_node is not None else ():
            if k.value == "communes":
                block_nodes = v.value
        block_lines = [loaded.line(b) for b in blocks]
        _unknown_keys(errors, 1, "top-level", doc, {"communes", "brokers", "profiles"})
    else:
        _unknown_keys(errors, 1, "top-level", doc, {"commune", "villages", "devices", "brokers", "profiles"})
        if not isinstance(doc.get("commune"), dict):
            errors.add(loaded.line(doc.get("commune")) or 1, "commune: {id, name} is required")
            errors.raise_if_any()
        blocks = [{**doc["commune"], "villages": doc.get("villages"), "devices": doc.get("devices")}]
        block_nodes = [root_node]
        block_lines = [loaded.line(doc["commune"])]

    communes: list[Commune] = []
    villages: list[Village] = []
    devices: list[Device] = []
    passwords: dict[str, str] = {}
    lines: dict[str, int | None] = {}
    if profiles_dir is _FROM_ENV:
        profiles_dir = _profiles_dir()
    top = {k.value: v for k, v in root_node.value} if isinstance(root_node, yaml.MappingNode) else {}
    brokers, broker_passwords = _brokers(errors, doc.get("brokers"), node_lines("brokers", root_node))
    file_profiles = _file_profiles(errors, doc.get("profiles"), top.get("profiles"))
    sources = _Sources({**_catalogue(errors, profiles_dir), **file_profiles})
    for i, block in enumerate(blocks):
        bnode = block_nodes[i] if i < len(block_nodes) else None
        bline = block_lines[i] or (bnode.start_mark.line + 1 if bnode is not None else 1)
        if not isinstance(block, dict):
            errors.add(bline, "a commune must be a mapping")
            continue
        cid = _check_id(errors, bline, "commune id", block.get("id"))
        if not block.get("name"):
            errors.add(bline, f"commune {block.get('id')!r} needs a name")
        _unknown_keys(
            errors,
            bline,
            "commune",
            {k: v for k, v in block.items() if k not in ("villages", "devices")},
            _COMMUNE_KEYS,
        )
        if cid is None:
            continue
        district, province = block.get("district"), block.get("province")
        for what, value in (("district", district), ("province", province)):
            if value is not None and not isinstance(value, str):
                errors.add(bline, f"commune {cid}: {what} must be text, not {type(value).__name__}")
        term = block.get("village_term")
        if term is not None and (not isinstance(term, str) or not term.strip() or len(term) > 40):
            errors.add(
                bline,
                f"commune {cid}: village_term is what its villages are called (ấp, xóm, thôn…): short text",
            )
            term = None
        communes.append(
            Commune(
                cid, str(block.get("name")), _text(district), _text(province), _text(term and term.strip())
            )
        )
        vlines = node_lines("villages", bnode)
        items = _listed(
            errors, loaded.line(block.get("villages")) or bline, "villages", block.get("villages")
        )
        for j, v in enumerate(items):
            line = loaded.line(v) or (vlines[j] if len(vlines) == len(items) else bline)
            if not isinstance(v, dict):
                errors.add(line, "a village must be a mapping {id, name}")
                continue
            _unknown_keys(errors, line, "village", v, _VILLAGE_KEYS)
            vid = _check_id(errors, line, "village id", v.get("id"))
            former = _former_commune(errors, line, v.get("former_commune"))
            if not v.get("name"):
                errors.add(line, f"village {v.get('id')!r} needs a name")
            elif vid:
                villages.append(Village(cid, vid, str(v["name"]), former))
        dlines = node_lines("devices", bnode)
        items = _listed(errors, loaded.line(block.get("devices")) or bline, "devices", block.get("devices"))
        for j, row in enumerate(items):
            line = loaded.line(row) or (dlines[j] if len(dlines) == len(items) else bline)
            if not isinstance(row, dict):
                errors.add(line, "a device must be a mapping")
                continue
            _unknown_keys(errors, line, "device", row, _DEVICE_KEYS)
            dev = _device(errors, line, cid, row, passwords, sources)
            if dev:
                devices.append(dev)
                lines[dev.id] = line
    reg = Registry(
        tuple(communes),
        tuple(villages),
        tuple(devices),
        passwords,
        tuple(brokers),
        broker_passwords,
        file_profiles,
        sources.secrets,
        source,
        lines,
    )
    _cross_check(errors, reg, lines)
    _check_source_refs(errors, reg, lines)
    errors.raise_if_any()
    return reg


def _csv_rows(reader: "csv.DictReader[str]", errors: _Errors) -> Iterator[dict[str, Any]]:
    """The rows, until one the csv module cannot read (a field over its size limit)."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            # line_num counts the lines read whole; the error is in the next one
            errors.add(reader.line_num + 1, f"not valid CSV: {err}")
            return
        yield row


def parse_csv(text: str, source: str = "registry", profiles_dir: Path | None = _FROM_ENV) -> Registry:
    """One device a row; communes and villages named here are created with their id as name
    when they do not exist yet (names come from a YAML import)."""
    errors = _Errors(source)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        errors.add(reader.line_num + 1, f"not valid CSV: {err}")
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing:
        errors.add(1, f"missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
    if unknown:
        errors.add(1, f"unknown column(s) {', '.join(unknown)}; expected {','.join(CSV_COLUMNS)}")
    errors.raise_if_any()
    communes: dict[str, Commune] = {}
    villages: dict[tuple[str, str], Village] = {}
    devices: list[Device] = []
    passwords: dict[str, str] = {}
    lines: dict[str, int | None] = {}
    if profiles_dir is _FROM_ENV:
        profiles_dir = _profiles_dir()
    sources = _Sources(_catalogue(errors, profiles_dir))
    for row in _csv_rows(reader, errors):
        line = reader.line_num
        if None in row:
            errors.add(line, f"{len(row[None])} value(s) more than the header has columns")  # type: ignore[index]
            continue
        cells = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if not any(cells.values()):
            continue
        bad = [msg for v in cells.values() if isinstance(v, str) and (msg := _unstorable(v))]
        if bad:
            errors.add(line, bad[0])
            continue
        cid = _check_id(errors, line, "commune id", cells.get("commune"))
        if cid is None:
            continue
        communes.setdefault(cid, Commune(cid, cid))
        spec: dict[str, Any] = {
            k: cells.get(k) or None
            for k in ("id", "kind", "village", "name", "lat", "lon", "parent", "heartbeat_s")
        }
        if cells.get("onvif_host") or cells.get("onvif_username") or cells.get("onvif_password"):
            spec["onvif"] = {
                k: cells.get(f"onvif_{k}") or None for k in ("host", "port", "username", "password", "poll_s")
            }
            spec["onvif"] = {k: v for k, v in spec["onvif"].items() if v is not None}
        if cells.get("source"):
            spec["source"] = cells["source"]
        former = _former_commune(errors, line, cells.get("former_commune") or None)
        if former and not spec.get("village"):
            errors.add(line, "former_commune belongs to a village: give the device's village too")
        dev = _device(errors, line, cid, spec, passwords, sources)
        if dev:
            devices.append(dev)
            lines[dev.id] = line
            if dev.village_id:
                key = (cid, dev.village_id)
                known = villages.get(key)
                if known is not None and former and known.former_commune not in (None, former):
                    errors.add(
                        line,
                        f"village {dev.village_id}: former_commune {former!r} disagrees with"
                        f" {known.former_commune!r} on an earlier row",
                    )
                elif known is None or (former and known.former_commune is None):
                    villages[key] = Village(cid, dev.village_id, dev.village_id, former)
    reg = Registry(
        tuple(communes.values()),
        tuple(villages.values()),
        tuple(devices),
        passwords,
        source_secrets=sources.secrets,
        where=source,
        lines=lines,
    )
    _cross_check(errors, reg, lines)
    errors.raise_if_any()
    return reg


def read(path: Path, limits: yaml_limits.Limits = yaml_limits.DEFAULT_LIMITS) -> Registry:
    """Parse a registry file by its extension (.yaml/.yml or .csv)."""
    try:
        with path.open("rb") as f:
            # one byte more than allowed tells a file at the limit from one beyond it
            data = f.read(limits.max_bytes + 1)
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err}") from err
    if len(data) > limits.max_bytes:
        errors = _Errors(str(path))
        errors.add(None, f"larger than {yaml_limits.size(limits.max_bytes)}; a registry file is smaller")
        errors.raise_if_any()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        errors = _Errors(str(path))
        line = data.count(b"\n", 0, err.start) + 1
        errors.add(
            line, f"not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); save the file as UTF-8"
        )
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return parse_yaml(text, str(path))
    if suffix == ".csv":
        return parse_csv(text, str(path))
    raise InvalidInput(f"{path}: registry files are .yaml, .yml or .csv")
