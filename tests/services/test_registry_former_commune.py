"""former_commune in registry files (the 2025 reform): YAML and CSV, and mistakes with their lines."""

import pytest

from services import registry_file
from services.errors import InvalidInput

YAML = """\
commune: {id: thoai-giang, name: "Xã Thoại Sơn", province: "An Giang"}
villages:
  - {id: trung-binh, name: "Ấp Trung Bình", former_commune: "Xã Thoại Giang"}
  - {id: tay-binh, name: "Ấp Tây Bình", former_commune: "  Xã Thoại Giang  "}
  - {id: moi, name: "Ấp Mới"}
devices: []
"""


def errors(fn, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as err:
        fn(text, "f", profiles_dir=None)
    assert isinstance(err.value.detail, list)
    return err.value.detail


def test_yaml_villages_carry_their_former_commune() -> None:
    reg = registry_file.parse_yaml(YAML, profiles_dir=None)
    assert [(v.id, v.former_commune) for v in reg.villages] == [
        ("trung-binh", "Xã Thoại Giang"),
        ("tay-binh", "Xã Thoại Giang"),
        ("moi", None),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12", "f:3: former_commune must be the former commune's name (text), not 12"),
        ('""', "f:3: former_commune must be the former commune's name (text), not ''"),
        ("[a, b]", "f:3: former_commune must be the former commune's name (text), not ['a', 'b']"),
        ("x" * 201, "f:3: former_commune is a name: at most 200 characters"),
    ],
)
def test_a_yaml_former_commune_that_is_not_a_name_is_refused_with_its_line(value: str, message: str) -> None:
    text = YAML.replace('former_commune: "Xã Thoại Giang"}', f"former_commune: {value}}}", 1)
    assert errors(registry_file.parse_yaml, text) == [message]


def test_a_typo_in_the_key_is_an_unknown_field() -> None:
    text = YAML.replace('former_commune: "Xã Thoại Giang"', 'former_comune: "Xã Thoại Giang"', 1)
    assert errors(registry_file.parse_yaml, text) == [
        "f:3: unknown village field(s) former_comune (allowed: former_commune, id, name)"
    ]


def test_csv_rows_give_their_villages_former_commune() -> None:
    reg = registry_file.parse_csv(
        "commune,id,kind,village,former_commune\n"
        "thoai-giang,spk-1,speaker,trung-binh,\n"
        "thoai-giang,spk-2,speaker,trung-binh,Xã Thoại Giang\n"
        "thoai-giang,spk-3,speaker,tay-binh,\n",
        profiles_dir=None,
    )
    assert {v.id: v.former_commune for v in reg.villages} == {
        "trung-binh": "Xã Thoại Giang",
        "tay-binh": None,
    }
    # files without the column still import
    reg = registry_file.parse_csv(
        "commune,id,kind,village\nthoai-giang,spk-1,speaker,trung-binh\n", profiles_dir=None
    )
    assert reg.villages[0].former_commune is None


def test_csv_rows_that_disagree_or_name_no_village_are_refused_with_their_lines() -> None:
    text = (
        "commune,id,kind,village,former_commune\n"
        "thoai-giang,spk-1,speaker,trung-binh,Xã Thoại Giang\n"
        "thoai-giang,spk-2,speaker,trung-binh,Xã Bình Thành\n"
        "thoai-giang,gw-1,gateway,,Xã Thoại Giang\n"
    )
    assert errors(registry_file.parse_csv, text) == [
        "f:3: village trung-binh: former_commune 'Xã Bình Thành' disagrees with 'Xã Thoại Giang' on an earlier row",
        "f:4: former_commune belongs to a village: give the device's village too",
    ]
