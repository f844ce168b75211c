"""The one catalogue of words people read: the page, notifications, error sentences, CSV headers.

The words live in dashboard/words.json (`{"vi": {key: text}, "en": {key: text}}`), which the page
imports as it is; Vietnamese is the reference and English has the same keys and the same
`{placeholders}` (tests/services/test_words.py). How to add a word: docs/words.md.
"""

import functools
import json
import logging
import warnings
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

CATALOGUE = Path(__file__).resolve().parents[1] / "dashboard" / "words.json"
LANGS = ("vi", "en")
log = logging.getLogger(__name__)


class UnknownWord(UserWarning):
    """A key the catalogue does not have (an error under pytest's `filterwarnings = error`)."""


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    """Every word by language, read once."""
    data = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return {lang: dict(data[lang]) for lang in LANGS}


def has(key: str) -> bool:
    """True when the catalogue has `key` (in Vietnamese, the reference)."""
    return key in catalogue()["vi"]


@functools.cache
def _unknown(key: str) -> None:
    log.warning("the catalogue has no word %r (dashboard/words.json)", key)


def text(key: str, lang: str = "vi", **fields: Any) -> str:
    """The word `key` in `lang` (Vietnamese when `lang` has none), its `{field}`s filled in.

    `{vt}` and `{Vt}` are the commune's word for its villages, as on the page: the `vt` field when
    given, else «xóm / ấp» (English: "village"); `{Vt}` capitalised. An unknown key is logged once
    and returned as it is.
    """
    cat = catalogue()
    s = cat.get(lang, cat["vi"]).get(key)
    if s is None:
        s = cat["vi"].get(key)
    if s is None:
        _unknown(key)
        warnings.warn(f"the catalogue has no word {key!r}", UnknownWord, stacklevel=2)
        return key
    vt = fields.pop("vt", None)
    for k, v in fields.items():
        s = s.replace("{" + k + "}", str(v))
    if "{vt}" in s or "{Vt}" in s:
        term = (vt or "xóm / ấp") if lang == "vi" else "village"
        s = s.replace("{vt}", term).replace("{Vt}", term[:1].upper() + term[1:])
    return s


def number(value: float, lang: str = "vi", decimals: int | None = None) -> str:
    """A number as the page shows it (Intl vi-VN / en-GB): «1.234,5» in Vietnamese, "1,234.5" in
    English; `decimals` fixed, else up to two."""
    d = Decimal(str(value)).quantize(Decimal(1).scaleb(-(2 if decimals is None else decimals)), ROUND_HALF_UP)
    sign = "-" if d < 0 and d != 0 else ""
    whole, _, frac = f"{abs(d):f}".partition(".")
    if decimals is None:
        frac = frac.rstrip("0")
    group, point = (".", ",") if lang == "vi" else (",", ".")
    digits = f"{int(whole):,}".replace(",", group)
    return sign + digits + (point + frac if frac else "")
