"""Registry files that used to end in a traceback, a wrong line, or gigabytes (issue #12 item 5,
issue #13 item 7): each is refused with `FILE:LINE: …` and nothing else, found by the registry fuzz
(tests/services/test_registry_fuzz.py) or by hand."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from services import registry_file, yaml_limits
from services.errors import InvalidInput

OK = "commune: {id: tg, name: T}\n"
# 9 levels of 9 aliases: ~387 M nodes once expanded, 600 bytes on disk
BOMB = 'a0: &a0 ["lol"]\n' + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)
)


def refused(text: str, source: str = "r.yaml") -> list[str]:
    """The error lines of a refused YAML file (each `FILE:LINE: message`)."""
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_yaml(text, source)
    first, *lines = exc.value.message.split("\n")
    assert first.endswith(f"in {source}; nothing imported:"), first
    assert lines == exc.value.detail
    return lines


# -- limits ----------------------------------------------------------------------------------

CHILD = """
import json, resource, sys
from services import registry_file
from services.errors import InvalidInput
try:
    registry_file.parse_yaml(sys.stdin.read(), "bomb.yaml")
    error = None
except InvalidInput as err:
    error = err.message
rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"error": error, "rss_mb": rss_kb / 1024}))
"""


def _cap_memory() -> None:
    # if the limit is gone, the bomb dies here at 1.5 GB instead of taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024 * 1024, 1536 * 1024 * 1024))


@pytest.mark.timeout(120)
def test_yaml_alias_bomb_is_refused_by_line_with_bounded_memory() -> None:
    # the name is what the old code expanded (`str(name)`), 5.6 GB and minutes
    text = BOMB + "commune: {id: tg, name: *a9}\n"
    r = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=text,
        capture_output=True,
        text=True,
        preexec_fn=_cap_memory,
        timeout=100,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["error"] is not None
    assert "bomb.yaml:7: the document expands to more than 1,000,000 nodes" in out["error"]
    assert out["rss_mb"] < 300, out


def test_aliases_and_merge_keys_within_the_limit_still_load() -> None:
    reg = registry_file.parse_yaml(
        OK + "devices:\n"
        "  - {id: cam-1, kind: camera, onvif: &o {host: 192.0.2.1, port: 80, username: admin}}\n"
        "  - {id: cam-2, kind: camera, onvif: {<<: *o, port: 8080}}\n"
        "  - {id: cam-3, kind: camera, onvif: *o}\n"
    )
    assert [(d.id, d.onvif and d.onvif.port) for d in reg.devices] == [
        ("cam-1", 80),
        ("cam-2", 8080),
        ("cam-3", 80),
    ]


def test_nesting_deeper_than_the_limit_is_refused_not_a_recursion_error() -> None:
    assert refused(OK + "villages: " + "[" * 100 + "]" * 100 + "\n") == [
        "r.yaml:2: nested deeper than 64 levels"
    ]
    # libyaml stops at its own limit (1,000) first; PyYAML's composer died of a RecursionError
    [line] = refused(OK + "villages: " + "[" * 2000 + "]" * 2000 + "\n")
    assert line.startswith("r.yaml:2: "), line


def test_files_over_the_size_cap_are_refused_before_parsing(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text(OK + "#" * 2000 + "\n")
    limits = yaml_limits.Limits(max_bytes=1000)
    with pytest.raises(InvalidInput) as exc:
        registry_file.read(f, limits)
    assert exc.value.detail == [f"{f}: larger than 1,000 bytes; a registry file is smaller"]
    f.write_text(OK)
    assert registry_file.read(f, limits).communes[0].id == "tg"


# -- values PyYAML builds with a library error -------------------------------------------------


def test_timestamp_with_month_13_is_a_line_numbered_error() -> None:
    [line] = refused(OK + "devices:\n  - {id: a, kind: speaker, name: 2021-13-45}\n")
    assert line.startswith("r.yaml:3: bad value: month must be in 1..12")


def test_integer_of_5000_digits_is_a_line_numbered_error() -> None:
    [line] = refused(OK + "devices:\n  - id: a\n    kind: speaker\n    heartbeat_s: " + "9" * 5000 + "\n")
    assert line.startswith("r.yaml:5: bad value: Exceeds the limit (4300 digits)")


def test_control_character_is_one_line_with_its_line_number() -> None:
    [line] = refused(OK + "devices: []\n# \x01\n")
    assert line.startswith("r.yaml:3: not valid YAML: unacceptable character #x0001"), line


# -- shapes the parser assumed -----------------------------------------------------------------


def test_commune_that_is_a_list_is_an_error_not_a_type_error() -> None:
    assert refused("commune: [tg, T]\n") == ["r.yaml:1: commune: {id, name} is required"]


@pytest.mark.parametrize("value", ["true", "5", "tg", "{id: a}"])
def test_villages_or_devices_that_are_not_lists_are_errors(value: str) -> None:
    assert refused(OK + f"villages: {value}\n")[0].endswith("villages must be a list")
    assert refused(OK + f"devices: {value}\n")[0].endswith("devices must be a list")


def test_number_and_text_keys_in_one_device_are_reported_not_sorted_into_a_type_error() -> None:
    [line] = refused(OK + "devices:\n  - {id: a, kind: speaker, 1: x, foo: y}\n")
    assert line.startswith("r.yaml:3: unknown device field(s) 1, foo (allowed: heartbeat_s, id, kind,"), line


def test_a_second_devices_key_is_refused_where_it_is_written() -> None:
    # PyYAML would keep the second `devices:` and drop the first list without a word
    text = OK + "devices: []\ndevices:\n  - {id: Bad_ID, kind: speaker}\n"
    assert refused(text) == ["r.yaml:3: devices is given twice (first on line 2); keep one"]


def test_rows_from_a_merge_key_keep_their_line_numbers() -> None:
    text = (
        "base: &base {devices: [{id: Bad_ID, kind: speaker}]}\ncommunes:\n  - {<<: *base, id: tg, name: T}\n"
    )
    lines = refused(text)
    assert "r.yaml:1: device id 'Bad_ID' must match [a-z0-9][a-z0-9-]{0,62}" in lines
    assert all(line.startswith(("r.yaml:1:", "r.yaml:3:")) for line in lines), lines


# -- what PostgreSQL would refuse, refused by the file's line instead ---------------------------


@pytest.mark.parametrize(
    ("escape", "char", "what"),
    [("\\0", "\x00", "a NUL character (U+0000)"), ("\\ud800", "\ud800", "a lone surrogate (U+D800)")],
)
def test_text_postgresql_cannot_store_is_a_line_numbered_error(escape: str, char: str, what: str) -> None:
    lines = refused(OK + f'devices:\n  - {{id: a, kind: speaker, name: "x{escape}y"}}\n')
    if lines != ["r.yaml:3: not valid YAML: found invalid Unicode character escape code"]:  # libyaml
        assert lines == [f"r.yaml:3: text with {what} cannot be stored: {f'x{char}y'!r}"]


def test_commune_district_that_is_not_text_is_an_error() -> None:
    assert refused("commune: {id: tg, name: T, district: {a: 1}}\n") == [
        "r.yaml:1: commune tg: district must be text, not dict"
    ]


def test_csv_cell_with_a_nul_is_a_line_numbered_error() -> None:
    text = "commune,id,kind,name\ntg,a,speaker,x\x00y\n"
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_csv(text, "d.csv")
    assert exc.value.detail == ["d.csv:2: text with a NUL character (U+0000) cannot be stored: 'x\\x00y'"]


def test_csv_field_over_the_csv_module_limit_is_a_line_numbered_error() -> None:
    text = 'commune,id,kind,name\ntg,a,speaker,x\ntg,b,speaker,"' + "y" * 200_000 + '"\n'
    with pytest.raises(InvalidInput) as exc:
        registry_file.parse_csv(text, "d.csv")
    assert exc.value.detail == ["d.csv:3: not valid CSV: field larger than field limit (131072)"]


def test_file_not_in_utf8_names_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_bytes("commune,id,kind,name\ntg,a,speaker,Ấp\n".encode() + "tg,b,speaker,Hòa\n".encode("latin-1"))
    with pytest.raises(InvalidInput) as exc:
        registry_file.read(f)
    [line] = exc.value.detail
    assert line.startswith(f"{f}:3: not UTF-8 (byte 0x"), line


def test_a_key_written_twice_is_a_line_numbered_error_not_the_last_value() -> None:
    # PyYAML keeps the last value silently: a second `kind:` would have changed the device unseen.
    assert refused(OK + "devices:\n  - id: a\n    kind: speaker\n    name: Loa\n    kind: camera\n") == [
        "r.yaml:6: kind is given twice (first on line 4); keep one"
    ]
    # a merge key's values may still be overridden: that is what `<<` is for
    merged = OK + "devices:\n  - &a {id: a, kind: speaker, name: Loa}\n  - {<<: *a, id: b, name: Loa 2}\n"
    assert [d.name for d in registry_file.parse_yaml(merged, "r.yaml").devices] == ["Loa", "Loa 2"]
