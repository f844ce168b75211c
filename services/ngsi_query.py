"""The NGSI-LD Query Language (ETSI GS CIM 009 §4.9) and Geoquery Language (§4.10) as far as the
Device view needs them, evaluated on an entity in its keyValues shape (ngsi_entities.key_values).

`q` takes `;` (AND), `|` (OR), parentheses, `==`, `!=`, `>`, `>=`, `<`, `<=`, `~=` / `=~` (an RE2
pattern), `!~=` / `!~`, a bare attribute (it exists) and `!attr` (it does not); values are
numbers, `true`/`false`, quoted strings, dateTimes, lists (`"a","b"`) and ranges (`1..5`). A term
on an attribute the entity lacks is false. Geoqueries take `near;maxDistance==m`,
`near;minDistance==m`, `within`, `intersects`, `disjoint` and `equals` on the `location` Point.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import re2  # type: ignore[import-untyped]

from services.errors import InvalidInput

Predicate = Callable[[dict[str, Any]], bool]
MAX_Q = 500
_RE2 = re2.Options()
_RE2.log_errors = False
_ATTR = r"!?[A-Za-z_@][A-Za-z0-9_:/#.\-]*"
_TOKEN = re.compile(
    rf"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<and>;)|(?P<or>\|)
    |(?P<attr>{_ATTR})\s*(?:(?P<op>==|!=|>=|<=|>|<|!~=|!~|~=|=~)\s*
    (?P<value>"(?:[^"\\]|\\.)*"(?:\s*,\s*"(?:[^"\\]|\\.)*")*|[^;|()"=!<>~\s][^;|()"]*))?)\s*""",
    re.VERBOSE,
)
EARTH_RADIUS_M = 6_371_008.8


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1].replace('\\"', '"')
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _values(text: str) -> tuple[str, Any]:
    """('list', [...]), ('range', (lo, hi)) or ('one', v) of a term's right side."""
    text = text.strip()
    if ".." in text and not text.startswith('"'):
        lo, _, hi = text.partition("..")
        return "range", (_scalar(lo), _scalar(hi))
    parts = re.findall(r'"(?:[^"\\]|\\.)*"|[^,]+', text)
    if len(parts) > 1:
        return "list", [_scalar(p) for p in parts]
    return "one", _scalar(text)


def _comparable(a: Any, b: Any) -> bool:
    numeric = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numeric) and isinstance(b, numeric)) or (isinstance(a, str) and isinstance(b, str))


def _order(op: str, a: Any, b: Any) -> bool:
    if not _comparable(a, b):
        return False
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


def _equal(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a == b


def _term(attr: str, op: str | None, value: str | None, terms: dict[str, str]) -> Predicate:
    negate_exists = attr.startswith("!")
    name = attr.lstrip("!")
    name = terms.get(name, name)
    if op is None:
        return (lambda e: name not in e) if negate_exists else (lambda e: name in e)
    if negate_exists or value is None:
        raise InvalidInput(f"q term {attr}{op}{value or ''} is not well formed")
    if op in ("~=", "=~", "!~=", "!~"):
        pattern_text = _scalar(value)
        try:
            pattern = re2.compile(str(pattern_text), _RE2)
        except re2.error as err:
            raise InvalidInput(f"q: {pattern_text!r} is not a regular expression we take: {err}") from err
        want = op in ("~=", "=~")

        def match(e: dict[str, Any]) -> bool:
            v = e.get(name)
            items = v if isinstance(v, list) else [v]
            found = any(isinstance(x, str) and pattern.search(x) is not None for x in items)
            return found == want if name in e else False

        return match
    form, rhs = _values(value)

    def one(v: Any) -> bool:
        if form == "range":
            lo, hi = rhs
            return _order(">=", v, lo) and _order("<=", v, hi)
        if form == "list":
            return any(_equal(v, x) for x in rhs)
        if op in ("==", "!="):
            return _equal(v, rhs)
        return _order(op, v, rhs)

    if form != "one" and op not in ("==", "!="):
        raise InvalidInput(f"q: {op} takes one value, not a list or range ({attr}{op}{value})")

    def check(e: dict[str, Any]) -> bool:
        if name not in e:
            return False
        v = e[name]
        items = v if isinstance(v, list) else [v]
        hit = any(one(x) for x in items)
        return (not hit) if op == "!=" else hit

    return check


@dataclass(frozen=True)
class Query:
    """A parsed `q`: `matches` an entity (keyValues), and the attribute==value terms every match has."""

    text: str
    matches: Predicate
    equalities: dict[str, Any]
    # the attribute names its terms read, as the entities call them (the @context's terms applied)
    attributes: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str, terms: dict[str, str] | None = None) -> "Query":
        """400 (InvalidInput) when the text is not a query of the language above."""
        if len(text) > MAX_Q:
            raise InvalidInput(f"q is longer than {MAX_Q} characters")
        tokens = _tokens(text, terms or {})
        pred, rest, eqs = _or(tokens, 0)
        if rest != len(tokens):
            raise InvalidInput(f"q {text!r} is not well formed near token {rest + 1}")
        names = frozenset(terms_of(p[1], p[4]) for kind, p in tokens if kind == "term")
        return cls(text, pred, eqs, names)


def terms_of(attr: str, terms: dict[str, str]) -> str:
    """The entity attribute a q term reads: without `!`, the @context's term for an expanded name."""
    name = attr.lstrip("!")
    return terms.get(name, name)


def _tokens(text: str, terms: dict[str, str]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidInput(
                f"q term at {text[pos : pos + 20]!r} is not well formed (q {text!r}); e.g. "
                'deviceState=="offline";batteryLevel<0.2'
            )
        pos = m.end()
        for kind in ("open", "close", "and", "or"):
            if m[kind]:
                out.append((kind, None))
        if m["attr"]:
            attr = m["attr"]
            out.append(("term", (_term(attr, m["op"], m["value"], terms), attr, m["op"], m["value"], terms)))
    return out


def _or(tokens: list[tuple[str, Any]], i: int) -> tuple[Predicate, int, dict[str, Any]]:
    left, i, eqs = _and(tokens, i)
    alternatives = [left]
    while i < len(tokens) and tokens[i][0] == "or":
        right, i, _ = _and(tokens, i + 1)
        alternatives.append(right)
    if len(alternatives) == 1:
        return left, i, eqs
    return (lambda e: any(p(e) for p in alternatives)), i, {}


def _and(tokens: list[tuple[str, Any]], i: int) -> tuple[Predicate, int, dict[str, Any]]:
    parts: list[Predicate] = []
    eqs: dict[str, Any] = {}
    while True:
        if i >= len(tokens):
            raise InvalidInput("q ends where a term was expected")
        kind, payload = tokens[i]
        if kind == "open":
            pred, i, inner = _or(tokens, i + 1)
            if i >= len(tokens) or tokens[i][0] != "close":
                raise InvalidInput("q has an unclosed parenthesis")
            i += 1
            eqs.update(inner)
        elif kind == "term":
            pred, attr, op, value, terms = payload
            if op == "==" and value is not None and not attr.startswith("!"):
                form, rhs = _values(value)
                if form == "one":
                    eqs[terms.get(attr, attr)] = rhs
            i += 1
        else:
            raise InvalidInput("q has an operator where a term was expected")
        parts.append(pred)
        if i < len(tokens) and tokens[i][0] == "and":
            i += 1
            continue
        break
    if len(parts) == 1:
        return parts[0], i, eqs
    return (lambda e: all(p(e) for p in parts)), i, eqs


# --- Geoqueries (§4.10) -------------------------------------------------------------------------

GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")


def _distance_m(a: list[float], b: list[float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _in_ring(p: list[float], ring: list[list[float]]) -> bool:
    x, y = p[0], p[1]
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _in_polygon(p: list[float], rings: list[list[list[float]]]) -> bool:
    return _in_ring(p, rings[0]) and not any(_in_ring(p, hole) for hole in rings[1:])


def _point(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) in (2, 3)
        and all(isinstance(c, int | float) and not isinstance(c, bool) for c in v)
    )


def _polygon(coords: Any) -> bool:
    return (
        isinstance(coords, list)
        and bool(coords)
        and all(isinstance(r, list) and len(r) >= 4 and all(_point(p) for p in r) for r in coords)
    )


def _check_geometry(geometry: str, coords: Any) -> None:
    if geometry == "Point":
        ok = _point(coords)
    elif geometry == "Polygon":
        ok = _polygon(coords)
    elif geometry == "MultiPolygon":
        ok = isinstance(coords, list) and bool(coords) and all(_polygon(c) for c in coords)
    else:
        raise InvalidInput(f"geometry {geometry!r} is not one of Point, Polygon, MultiPolygon")
    if not ok:
        raise InvalidInput(f"coordinates are not a GeoJSON {geometry}")


def geo_filter(
    georel: str | None, geometry: str | None, coordinates: str | None, geoproperty: str | None
) -> Predicate | None:
    """A predicate on the entity's `location` Point, or None without a geoquery; 400 when malformed."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if not (georel and geometry and coordinates):
        raise InvalidInput("a geoquery needs georel, geometry and coordinates together")
    if geoproperty not in (None, "location", "https://uri.etsi.org/ngsi-ld/location"):
        raise InvalidInput(f"geoproperty {geoproperty!r}: only location is offered")
    rel, *mods = [p.strip() for p in georel.split(";")]
    if rel not in GEORELS:
        raise InvalidInput(f"georel {rel!r} is not one of {', '.join(GEORELS)}")
    try:
        coords = orjson.loads(coordinates)
    except orjson.JSONDecodeError as err:
        raise InvalidInput("coordinates are not a JSON array") from err
    _check_geometry(geometry, coords)
    polygons = [coords] if geometry == "Polygon" else coords if geometry == "MultiPolygon" else []

    def where(e: dict[str, Any]) -> list[float] | None:
        loc = e.get("location")
        return loc["coordinates"] if isinstance(loc, dict) and _point(loc.get("coordinates")) else None

    if rel == "near":
        if geometry != "Point" or len(mods) != 1:
            raise InvalidInput("georel near takes a Point and one of maxDistance==m or minDistance==m")
        m = re.fullmatch(r"(maxDistance|minDistance)==(\d+(?:\.\d+)?)", mods[0].replace(" ", ""))
        if not m:
            raise InvalidInput(f"georel near: {mods[0]!r} is not maxDistance==m or minDistance==m")
        limit = float(m[2])
        if m[1] == "maxDistance":
            return lambda e: (p := where(e)) is not None and _distance_m(p, coords) <= limit
        return lambda e: (p := where(e)) is not None and _distance_m(p, coords) >= limit
    if mods:
        raise InvalidInput(f"georel {rel} takes no modifier")

    def inside(p: list[float]) -> bool:
        if geometry == "Point":
            return abs(p[0] - coords[0]) < 1e-9 and abs(p[1] - coords[1]) < 1e-9
        return any(_in_polygon(p, rings) for rings in polygons)

    if rel in ("within", "intersects", "equals", "overlaps"):
        if rel == "within" and geometry == "Point":
            raise InvalidInput("georel within takes a Polygon or MultiPolygon")
        return lambda e: (p := where(e)) is not None and inside(p)
    if rel == "contains":
        # A Point contains only itself.
        return lambda e: (p := where(e)) is not None and geometry == "Point" and inside(p)
    return lambda e: (p := where(e)) is not None and not inside(p)
