"""The one catalogue (dashboard/words.json): both languages have every word, with the same fields."""

import json
import re
import unicodedata

import pytest

from services import words

FIELD = re.compile(r"\{(\w+)\}")


def test_every_word_is_in_both_languages_with_the_same_fields() -> None:
    cat = words.catalogue()
    assert set(cat["vi"]) == set(cat["en"]), {
        "only vi": sorted(set(cat["vi"]) - set(cat["en"])),
        "only en": sorted(set(cat["en"]) - set(cat["vi"])),
    }
    differ = {
        k: (sorted(set(FIELD.findall(v))), sorted(set(FIELD.findall(cat["en"][k]))))
        for k, v in cat["vi"].items()
        # English says "village" where Vietnamese says the commune's own word ({vt}).
        if set(FIELD.findall(v)) - {"vt", "Vt"} != set(FIELD.findall(cat["en"][k])) - {"vt", "Vt"}
    }
    assert differ == {}


def test_words_are_text_composed_and_not_empty() -> None:
    for lang, entries in words.catalogue().items():
        for key, value in entries.items():
            assert isinstance(value, str) and value.strip(), (lang, key)
            assert unicodedata.is_normalized("NFC", value), (lang, key)
            assert value.count("{") == value.count("}"), (lang, key)


def test_the_file_has_no_key_twice() -> None:
    # json.loads keeps the last of two equal keys silently: a word added twice would hide one.
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), sorted({k for k in keys if keys.count(k) > 1})
        return dict(pairs)

    json.loads(words.CATALOGUE.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)


def test_text_fills_fields_and_the_village_word_as_the_page_does() -> None:
    assert words.text("kind.gateway") == "Bộ định tuyến"
    assert words.text("kind.gateway", "en") == "Gateway"
    assert words.text("ov.villages", "vi", vt="ấp") == "Theo ấp"
    assert words.text("ov.village", "vi", vt="tổ dân phố") == "Tổ dân phố"
    assert words.text("ov.villages", "vi") == "Theo xóm / ấp"
    assert words.text("ov.villages", "en", vt="ấp") == "By village"
    assert words.text("misc.ago_m", "vi", n=5) == "5 phút trước"


def test_an_unknown_language_falls_back_to_vietnamese() -> None:
    assert words.text("kind.speaker", "fr") == "Loa"


def test_an_unknown_key_is_an_error_under_the_tests() -> None:
    with pytest.warns(words.UnknownWord):
        assert words.text("no.such.word") == "no.such.word"


@pytest.mark.parametrize(
    ("value", "lang", "decimals", "shown"),
    [
        (-3600, "vi", 0, "-3.600"),
        (1234.5, "vi", None, "1.234,5"),
        (1234.5, "en", None, "1,234.5"),
        (72.46, "vi", 1, "72,5"),
        (0.125, "vi", None, "0,13"),  # half away from zero, as Intl rounds
        (2.0, "vi", None, "2"),
        (12, "vi", 1, "12,0"),
    ],
)
def test_numbers_read_as_the_page_shows_them(
    value: float, lang: str, decimals: int | None, shown: str
) -> None:
    assert words.number(value, lang, decimals) == shown
