"""Every error code the gateway can answer has a sentence for people in the catalogue
(`error.<code>`, both languages): the page shows that sentence, never the server's developer text."""

import re
from pathlib import Path

from gateway import errors as gateway_errors
from services import errors, words

ROOT = Path(__file__).resolve().parents[2]
# `code = "x"` (an IocError's class attribute, or a middleware's `code = "x" if ... else "y"`),
# error_response(413, "x", ...), answer(path, 503, "x", ...) and {"code": "x", ...} bodies.
PATTERNS = (
    re.compile(r'\bcode = "(\w+)"(?: if [^\n]* else "(\w+)")?'),
    re.compile(r'error_response\(\s*\d+,\s*"(\w+)"'),
    re.compile(r'answer\([^,()]+(?:\([^()]*\))?,\s*[\w.]+,\s*"(\w+)"'),
    re.compile(r'"code": "(\w+)"'),
)


def codes_in_source() -> set[str]:
    found: set[str] = set()
    for package in ("services", "gateway", "ingest"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for pattern in PATTERNS:
                for m in pattern.finditer(text):
                    found.update(g for g in m.groups() if g)
    return found


def subclasses(cls: type) -> set[type]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= subclasses(sub)
    return out


def test_every_error_code_has_a_sentence_in_both_languages() -> None:
    codes = codes_in_source() | set(gateway_errors._CODES.values()) | {"internal", "network"}
    codes |= {c.code for c in subclasses(errors.IocError) | {errors.IocError}}
    # The scan must see the codes it is meant to guard, or it guards nothing.
    assert {"locked_out", "busy", "too_large", "request_timeout", "unprocessable", "rate_limited"} <= codes
    cat = words.catalogue()
    missing = sorted(c for c in codes if f"error.{c}" not in cat["vi"] or f"error.{c}" not in cat["en"])
    assert missing == []


def test_error_sentences_are_sentences_not_developer_text() -> None:
    for lang, entries in words.catalogue().items():
        for key, text in entries.items():
            if key.startswith("error."):
                assert text[0].isupper() and text.endswith("."), (lang, key)
                assert "{" not in text and "_" not in text, (lang, key)
