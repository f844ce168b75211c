"""YAML for files people hand us (registries): bounded before any object is built.

PyYAML composes an alias as a reference to the anchored node, so a file of a few hundred bytes
(9 levels × 9 aliases) stands for ~387 M nodes; anything that walks the result (a `repr` in an
error message, a `str()` of a name) expands it, and `ioc devices import` took 5.6 GB and minutes.
Here every composed node counts with the size of the tree it stands for, aliases included, and
composing stops at the first node beyond the bound, with its line. Nesting depth is bounded too
(PyYAML's composer and constructor recurse once per level), and so is the text itself.
"""

from dataclasses import dataclass
from typing import Any

import yaml

# A registry of 50,000 devices is about 1.5 M nodes and 10 MB.
MAX_BYTES = 32 * 1024 * 1024
MAX_NODES = 4_000_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_nodes: int = MAX_NODES
    max_depth: int = MAX_DEPTH


DEFAULT_LIMITS = Limits()


def size(n: int) -> str:
    """`32 MB`, `1,000 bytes`: a limit as a person reads it."""
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n:,} bytes"


class YamlRefused(Exception):
    """The text is not YAML we take: `line` (1-based, or None) and a message for a person."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self.limits = limits
        self.depth = 0
        self.expanded = 0
        # expanded size of each finished node, by identity (nodes live as long as the loader)
        self.sizes: dict[int, int] = {}
        self.constructing: yaml.Node | None = None
        self.lines: dict[int, int] = {}

    def _count(self, n: int, mark: Any) -> None:
        self.expanded += n
        if self.expanded > self.limits.max_nodes:
            raise YamlRefused(
                mark.line + 1 if mark else None,
                f"the document expands to more than {self.limits.max_nodes:,} nodes"
                " (aliases repeated inside aliases?); refused before building it",
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            # an alias of a node still being composed (a recursive anchor) counts as one
            self._count(self.sizes.get(id(node), 1), mark)
            return node
        self.depth += 1
        if self.depth > self.limits.max_depth:
            mark = self.peek_event().start_mark
            raise YamlRefused(mark.line + 1, f"nested deeper than {self.limits.max_depth} levels")
        before = self.expanded
        node = super().compose_node(parent, index)
        self.depth -= 1
        self._count(1, node.start_mark if node is not None else None)
        self.sizes[id(node)] = self.expanded - before
        return node

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
    loader = _BoundedLoader(text, limits)
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
