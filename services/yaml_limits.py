"""YAML for files people hand us (registries): bounded before any object is built.

PyYAML composes an alias as a reference to the anchored node, so a file of a few hundred bytes
(9 levels × 9 aliases) stands for ~387 M nodes; anything that walks the result (a `repr` in an
error message, a `str()` of a name) expands it, and `ioc devices import` took 5.6 GB and minutes.
So a first pass over the parser's events, which holds no tree, counts every node with the size
of what its aliases stand for and measures the nesting depth; only a text within the bounds is
composed and built. The parser and composer are libyaml's (C) when PyYAML has it: composing in
Python took ~750 MB and over a minute per million nodes here.
"""

from dataclasses import dataclass
from typing import Any

import yaml

# A registry of 50,000 devices is about 850 k nodes and 5 MB.
MAX_BYTES = 16 * 1024 * 1024
MAX_NODES = 1_000_000
MAX_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_nodes: int = MAX_NODES
    max_depth: int = MAX_DEPTH


DEFAULT_LIMITS = Limits()


def size(n: int) -> str:
    """`16 MB`, `1,000 bytes`: a limit as a person reads it."""
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n:,} bytes"


class YamlRefused(Exception):
    """The text is not YAML we take: `line` (1-based, or None) and a message for a person."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


def _line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def check(text: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise `YamlRefused` at the first node beyond the limits; reads events only, builds nothing."""
    total = 0
    # per open collection: the total when it started, and its anchor
    open_: list[tuple[int, str | None]] = []
    # expanded size of each anchored node; an alias of one still open (recursive) counts as one
    sizes: dict[str, int] = {}
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, yaml.AliasEvent):
            total += sizes.get(ev.anchor or "", 1)
        elif isinstance(ev, yaml.ScalarEvent):
            total += 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, yaml.CollectionStartEvent):
            total += 1
            open_.append((total - 1, ev.anchor))
            if len(open_) > limits.max_depth:
                raise YamlRefused(_line(ev.start_mark), f"nested deeper than {limits.max_depth} levels")
        elif isinstance(ev, yaml.CollectionEndEvent):
            started, anchor = open_.pop()
            if anchor is not None:
                sizes[anchor] = total - started
            continue
        else:
            continue
        if total > limits.max_nodes:
            raise YamlRefused(
                _line(ev.start_mark),
                f"the document expands to more than {limits.max_nodes:,} nodes"
                " (an alias counts as all it repeats); refused before building it",
            )


class _Builder(_Loader):  # type: ignore[misc,valid-type]
    """Notes where each mapping and sequence starts, and which node is being built."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.constructing: yaml.Node | None = None
        self.lines: dict[int, int] = {}

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """As PyYAML builds it, but a key written twice in one mapping is refused: PyYAML would keep
        the last value silently, and the first is what its writer may have meant (a merge key's
        values may still be overridden: that is what `<<` is for)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise YamlRefused(
                        line,
                        f"{key} is given twice (first on line {seen[key]}); keep one",
                    )
                seen[key] = line
        return super().construct_mapping(node, deep)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        self.constructing = node
        obj = super().construct_object(node, deep)
        if isinstance(obj, dict | list):
            self.lines.setdefault(id(obj), node.start_mark.line + 1)
        return obj


@dataclass(frozen=True)
class Document:
    node: yaml.Node | None
    data: Any
    # where each mapping and sequence of `data` starts, by identity (1-based lines)
    lines: dict[int, int]

    def line(self, obj: Any) -> int | None:
        return self.lines.get(id(obj))


def load(text: str, limits: Limits = DEFAULT_LIMITS) -> Document:
    """The composed root node, the document built from it, and the line of each container.

    Lines are looked up by object, not by key: with duplicate keys or merge keys (`<<: *x`)
    a container's key in the node tree is not the one whose value was kept.
    Raises `YamlRefused` for text beyond the limits and for values PyYAML cannot build
    (a timestamp with month 13, an integer of 5,000 digits), `yaml.YAMLError` for bad syntax.
    """
    if len(text) > limits.max_bytes:
        raise YamlRefused(None, f"larger than {size(limits.max_bytes)}")
    check(text, limits)
    loader = _Builder(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None, None, {})
        try:
            return Document(node, loader.construct_document(node), loader.lines)
        except (ValueError, OverflowError, TypeError) as err:
            # SafeConstructor lets a few library errors through for values it matched by regex.
            at = loader.constructing
            raise YamlRefused(
                at.start_mark.line + 1 if at is not None else None, f"bad value: {err}"
            ) from err
    finally:
        loader.dispose()
