"""The criteria file: the shipped default, and files with typos refused with their lines."""

from pathlib import Path

import pytest

from services.criteria import catalogue
from services.criteria.catalogue import CriteriaError

GOOD = """\
name: "Bộ tiêu chí thử"
indicators:
  - id: radio_villages
    name: "Loa đến các thôn"
    source: "Quyết định 318/QĐ-TTg, tiêu chí 8"
    measure: village_coverage
    kind: speaker
    target: 100
  - id: cameras_online
    name: {vi: "Camera hoạt động", en: "Cameras online"}
    source: "Quyết định 51/2025/QĐ-TTg"
    measure: availability
    kind: camera
    target: 97.5
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(CriteriaError) as err:
        catalogue.parse(text, "crit.yaml")
    assert isinstance(err.value.detail, list)
    return err.value.detail


def test_the_shipped_default_has_the_six_indicators_of_the_spec() -> None:
    crit = catalogue.read(catalogue.DEFAULT_FILE)
    assert [i.id for i in crit.indicators] == [
        "radio_villages",
        "cameras_online",
        "eboards_online",
        "public_wifi_online",
        "broadcast_reach",
        "data_shared",
    ]
    for ind in crit.indicators:
        assert "318/QĐ-TTg" in ind.source and ind.name["vi"] and ind.name["en"]
    assert "51/2025/QĐ-TTg" in catalogue.DEFAULT_FILE.read_text(encoding="utf-8")
    by_id = {i.id: i for i in crit.indicators}
    assert by_id["radio_villages"].settings == {"kind": "speaker", "min_availability_pct": 95.0}
    assert by_id["public_wifi_online"].settings == {"kind": "wifi"}
    assert by_id["data_shared"].unit == "count" and by_id["cameras_online"].unit == "%"


def test_a_good_file_reads_with_names_in_both_languages() -> None:
    crit = catalogue.parse(GOOD)
    assert crit.name == "Bộ tiêu chí thử"
    cams = crit.indicators[1]
    assert cams.label("en") == "Cameras online" and cams.label("vi") == "Camera hoạt động"
    assert crit.indicators[0].label("en") == "Loa đến các thôn"  # no English: the Vietnamese name
    assert cams.target == 97.5


def test_a_typo_in_a_measure_names_its_line_and_the_known_measures() -> None:
    errs = errors_of(GOOD.replace("measure: availability", "measure: availabilty"))
    assert errs == [
        "crit.yaml:12: unknown measure 'availabilty' "
        "(known: availability, broadcast_reach, data_shared, village_coverage)"
    ]


def test_unknown_keys_bad_targets_and_kinds_are_each_reported_on_their_line() -> None:
    text = GOOD.replace("    target: 100\n", "    target: 100%\n    traget: 100\n").replace(
        "kind: camera", "kind: cammera"
    )
    errs = errors_of(text)
    assert "crit.yaml:8: target '100%' must be a number (met when the value reaches it)" in errs
    assert any(e.startswith("crit.yaml:9: unknown key 'traget' for measure village_coverage") for e in errs)
    assert any(e.startswith("crit.yaml:14: kind 'cammera' is not one of camera") for e in errs)
    assert len(errs) == 3


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("120", "target 120 must be between 0 and 100 (a percentage)"),
        ("-1", "target -1 must be between 0 and 100 (a percentage)"),
        ("yes", "target True must be a number (met when the value reaches it)"),
        (".nan", "target nan must be a number (met when the value reaches it)"),
    ],
)
def test_targets_outside_what_the_measure_can_reach_are_refused(target: str, message: str) -> None:
    assert errors_of(GOOD.replace("target: 97.5", f"target: {target}")) == [f"crit.yaml:14: {message}"]


def test_missing_fields_duplicates_and_a_bad_top_level_are_refused() -> None:
    text = (
        "nmae: x\n"
        "indicators:\n"
        "  - {id: a, name: A, source: S, measure: data_shared, target: 1}\n"
        "  - {id: a, name: A, source: S, measure: data_shared, target: 1}\n"
        "  - {id: B-2, measure: broadcast_reach, target: 100}\n"
        "  - {id: c, name: {en: C}, source: S, measure: availability, target: 90}\n"
    )
    errs = errors_of(text)
    assert errs[0] == "crit.yaml:1: unknown key 'nmae' (allowed: indicators, name)"
    assert "crit.yaml:4: id a appears twice (first on line 3)" in errs
    assert "crit.yaml:5: id 'B-2' must match [a-z][a-z0-9_]{0,62}" in errs
    assert any(e.startswith("crit.yaml:5: name is required") for e in errs)
    assert any(e.startswith("crit.yaml:5: source is required") for e in errs)
    assert "crit.yaml:6: name needs vi (the report is in Vietnamese)" in errs
    assert "crit.yaml:6: kind None is not one of camera, speaker, eboard, wifi, gateway" in errs


def test_not_yaml_and_not_a_list_are_refused_with_a_line() -> None:
    assert errors_of("indicators: [\n  - x: 1\n")[0].startswith("crit.yaml:")
    assert errors_of("indicators: {}\n") == [
        "crit.yaml:1: indicators must be a list of at least one indicator"
    ]
    assert errors_of("- 1\n") == ["crit.yaml:1: a criteria file is a mapping with `indicators:` (a list)"]


def test_the_file_in_force_is_read_again_when_it_changes(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(GOOD, encoding="utf-8")
    assert len(catalogue.effective(f).indicators) == 2
    f.write_text(GOOD.split("  - id: cameras_online")[0] + "#\n", encoding="utf-8")
    assert [i.id for i in catalogue.effective(f).indicators] == ["radio_villages"]
    f.write_bytes(b"indicators:\n  - id: \xff\n")
    with pytest.raises(CriteriaError, match=r"c.yaml:2: not UTF-8"):
        catalogue.effective(f)
    with pytest.raises(CriteriaError, match="cannot read"):
        catalogue.effective(tmp_path / "missing.yaml")
