"""The criteria file (`IOC_CRITERIA_FILE`, default: the shipped default.yaml): read and checked.

Every problem is reported with its file line, all at once, and a file with any problem is refused
whole: a self-assessment computed from half a file would look right and be wrong.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services import yaml_limits
from services.errors import ConfigError
from services.models import KINDS

DEFAULT_FILE = Path(__file__).with_name("default.yaml")
ID_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
# measure -> (unit of its value, its settings and their defaults); the code implements each
# (services.criteria.measures), a file only chooses among them
MEASURES: dict[str, tuple[str, dict[str, Any]]] = {
    "village_coverage": ("%", {"kind": "speaker", "min_availability_pct": 95.0}),
    "availability": ("%", {"kind": None}),
    "broadcast_reach": ("%", {}),
    "data_shared": ("count", {}),
}
_INDICATOR_KEYS = {"id", "name", "source", "target", "measure"}
_TOP_KEYS = {"name", "indicators"}
MAX_BYTES = 1024 * 1024


class CriteriaError(ConfigError):
    """A criteria file that cannot be used; `detail` holds one `file:line: problem` per error."""


@dataclass(frozen=True)
class Indicator:
    id: str
    name: dict[str, str]  # by language; "vi" always there
    source: str
    target: float
    measure: str
    settings: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def unit(self) -> str:
        return MEASURES[self.measure][0]

    def label(self, lang: str) -> str:
        return self.name.get(lang) or self.name["vi"]


@dataclass(frozen=True)
class Criteria:
    name: str | None
    indicators: tuple[Indicator, ...]
    path: str


class _Errors:
    def __init__(self, where: str) -> None:
        self.where = where
        self.lines: list[str] = []

    def add(self, line: int | None, msg: str) -> None:
        self.lines.append(f"{self.where}:{line}: {msg}" if line else f"{self.where}: {msg}")

    def raise_if_any(self) -> None:
        if self.lines:
            n = len(self.lines)
            raise CriteriaError(
                f"{n} error{'s' if n > 1 else ''} in criteria file {self.where}:\n" + "\n".join(self.lines),
                detail=list(self.lines),
            )


def _key_lines(node: yaml.Node | None) -> dict[str, int]:
    """The line of each key of a mapping node (its last occurrence, as YAML keeps the last value)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in reversed(node.value):
            if k.value == key:
                return v
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def _indicator(errors: _Errors, row: Any, node: yaml.Node | None, line: int | None) -> Indicator | None:
    n0 = len(errors.lines)
    if not isinstance(row, dict):
        errors.add(line, "an indicator is a mapping with id, name, source, target and measure")
        return None
    keys = _key_lines(node)

    def at(key: str) -> int | None:
        return keys.get(key, line)

    measure = row.get("measure")
    if measure not in MEASURES:
        errors.add(at("measure"), f"unknown measure {measure!r} (known: {', '.join(sorted(MEASURES))})")
        settings_known: dict[str, Any] = {}
        # which settings a misspelt measure takes is unknown: one error is enough
        allowed = _INDICATOR_KEYS | {k for _, s in MEASURES.values() for k in s}
    else:
        settings_known = MEASURES[measure][1]
        allowed = _INDICATOR_KEYS | set(settings_known)
    for k in row:
        if str(k) not in allowed:
            hint = f" for measure {measure}" if measure in MEASURES else ""
            errors.add(at(str(k)), f"unknown key {k!r}{hint} (allowed: {', '.join(sorted(allowed))})")
    ind_id = row.get("id")
    if not isinstance(ind_id, str) or not ID_RE.fullmatch(ind_id):
        errors.add(at("id"), f"id {ind_id!r} must match [a-z][a-z0-9_]{{0,62}}")
    name = row.get("name")
    names: dict[str, str] = {}
    if isinstance(name, dict):
        for lang, text in name.items():
            if lang not in ("vi", "en"):
                errors.add(at("name"), f"name in {lang!r}: the languages are vi and en")
            elif _text(text) is None:
                errors.add(at("name"), f"name.{lang} must be text")
            else:
                names[lang] = str(text).strip()
        if "vi" not in name:
            errors.add(at("name"), "name needs vi (the report is in Vietnamese)")
    elif _text(name) is not None:
        names["vi"] = str(name).strip()
    else:
        errors.add(at("name"), "name is required: text in Vietnamese, or {vi: ..., en: ...}")
    source = _text(row.get("source"))
    if source is None:
        errors.add(at("source"), "source is required: the decision the indicator comes from")
    unit = MEASURES[measure][0] if measure in MEASURES else None
    raw_target = row.get("target")
    target = _number(raw_target)
    if target is None:
        errors.add(at("target"), f"target {raw_target!r} must be a number (met when the value reaches it)")
    elif target < 0 or (unit == "%" and target > 100):
        bounds = "0 and 100 (a percentage)" if unit == "%" else "0 or more"
        errors.add(at("target"), f"target {raw_target!r} must be between {bounds}")
    settings = dict(settings_known)
    if measure in MEASURES:
        kind = row.get("kind", settings_known.get("kind"))
        if "kind" in settings_known:
            if kind not in KINDS:
                errors.add(at("kind"), f"kind {kind!r} is not one of {', '.join(KINDS)}")
            settings["kind"] = kind
        if "min_availability_pct" in settings_known and "min_availability_pct" in row:
            pct = _number(row["min_availability_pct"])
            if pct is None or not 0 <= pct <= 100:
                errors.add(
                    at("min_availability_pct"),
                    f"min_availability_pct {row['min_availability_pct']!r} must be a number from 0 to 100",
                )
            else:
                settings["min_availability_pct"] = pct
    if len(errors.lines) > n0:
        return None
    assert isinstance(ind_id, str) and source is not None and target is not None and isinstance(measure, str)
    return Indicator(ind_id, names, source, target, measure, settings, line)


def parse(text: str, where: str = "criteria") -> Criteria:
    """A criteria file's text, checked; `CriteriaError` lists every problem with its line."""
    errors = _Errors(where)
    try:
        loaded = yaml_limits.load(text, yaml_limits.Limits(max_bytes=MAX_BYTES, max_nodes=100_000))
    except yaml_limits.YamlRefused as err:
        errors.add(err.line or 1, err.message)
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        errors.add(line, f"not valid YAML: {getattr(err, 'problem', None) or str(err).splitlines()[0]}")
        errors.raise_if_any()
        raise AssertionError("unreachable") from err
    doc, root = loaded.data, loaded.node
    if not isinstance(doc, dict):
        errors.add(1, "a criteria file is a mapping with `indicators:` (a list)")
        errors.raise_if_any()
    top = _key_lines(root)
    for k in doc:
        if str(k) not in _TOP_KEYS:
            errors.add(top.get(str(k), 1), f"unknown key {k!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    name = doc.get("name")
    if name is not None and _text(name) is None:
        errors.add(top.get("name", 1), "name must be text")
    rows = doc.get("indicators")
    seq = _child(root, "indicators")
    if not isinstance(rows, list) or not rows:
        errors.add(top.get("indicators", 1), "indicators must be a list of at least one indicator")
        errors.raise_if_any()
    assert isinstance(rows, list)
    items = (
        seq.value
        if isinstance(seq, yaml.SequenceNode) and len(seq.value) == len(rows)
        else [None] * len(rows)
    )
    out: list[Indicator] = []
    seen: dict[str, int | None] = {}
    for row, node in zip(rows, items, strict=True):
        line = node.start_mark.line + 1 if node is not None else loaded.line(row)
        ind = _indicator(errors, row, node, line)
        if ind is None:
            continue
        if ind.id in seen:
            errors.add(line, f"id {ind.id} appears twice (first on line {seen[ind.id]})")
            continue
        seen[ind.id] = line
        out.append(ind)
    errors.raise_if_any()
    return Criteria(_text(name), tuple(out), where)


def read(path: Path) -> Criteria:
    """Read and check a criteria file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CriteriaError(f"IOC_CRITERIA_FILE: cannot read {path}: {err.strerror or err}") from err
    if len(data) > MAX_BYTES:
        raise CriteriaError(f"{path}: larger than {yaml_limits.size(MAX_BYTES)}; a criteria file is smaller")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CriteriaError(f"{path}:{line}: not UTF-8; save the file as UTF-8") from err
    return parse(text, str(path))


_cache: dict[tuple[str, int, int], Criteria] = {}


def effective(path: Path | None = None) -> Criteria:
    """The criteria in force: `path`, else IOC_CRITERIA_FILE, else the shipped default; read again
    when the file changes, so an edited file counts from the next report without a restart."""
    if path is None:
        env = os.environ.get("IOC_CRITERIA_FILE")
        path = Path(env) if env else DEFAULT_FILE
    try:
        st = path.stat()
    except OSError as err:
        raise CriteriaError(f"IOC_CRITERIA_FILE: cannot read {path}: {err.strerror or err}") from err
    key = (str(path), st.st_mtime_ns, st.st_size)
    found = _cache.get(key)
    if found is None:
        found = read(path)
        _cache.clear()
        _cache[key] = found
    return found
