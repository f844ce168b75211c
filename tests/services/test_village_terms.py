"""The word a commune uses for its villages: its registry's `village_term`, else read from their names."""

import psycopg
import pytest

from services import registry, registry_file, village_terms
from services.alerts import messages, topology
from services.errors import InvalidInput
from services.village_terms import term_of


@pytest.mark.parametrize(
    ("names", "term"),
    [
        (["Ấp Trung Bình", "Ấp Tây Bình"], "ấp"),
        (["Xóm 1", "Xóm 10", "xóm 2"], "xóm"),
        (["Thôn Đông", "Thôn Tây"], "thôn"),
        (["Bản Na Hang"], "bản"),
        (["Tổ dân phố 3", "Tổ dân phố 4"], "tổ dân phố"),  # not "tổ"
        (["Ấp Trung Bình", "Xóm 4"], None),  # two communes that disagree: the page keeps "xóm / ấp"
        (["Ấp Trung Bình", "Trung tâm"], None),  # a name that says nothing
        (["Ấpxyz"], None),
        ([], None),
    ],
)
def test_the_village_word_is_the_one_every_name_starts_with(names: list[str], term: str | None) -> None:
    assert term_of(names) == term


TWO_COMMUNES = """\
communes:
  - id: thoai-giang
    name: Xã Thoại Giang
    village_term: ấp
    villages: [{id: trung-binh, name: Trung Bình}, {id: tay-binh, name: Tây Bình}]
    devices: [{id: spk-1, kind: speaker, village: trung-binh}]
  - id: dong-son
    name: Xã Đông Sơn
    villages: [{id: x1, name: Xóm 1}, {id: x2, name: Xóm 2}]
    devices: [{id: spk-2, kind: speaker, village: x1}]
"""


def test_the_registry_says_the_word_and_names_speak_for_a_commune_that_does_not(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(TWO_COMMUNES), None)
        # Thoại Giang's villages are named without "Ấp": only its registry says so.
        assert village_terms.commune_terms(conn) == {"thoai-giang": "ấp", "dong-son": "xóm"}
        assert village_terms.deployment_term(conn) is None  # two words: the page says «xóm / ấp»
        place = topology.read(conn).place("spk-1")
        assert place.village_term == "ấp"
        assert messages.headline("broadcast_not_reached", None, place, {}) == (
            "Bản tin khẩn cấp chưa đến mọi ấp sau 2 phút"
        )


def test_one_commune_s_word_is_the_page_s_and_a_file_that_drops_it_leaves_it_to_the_names(
    db_url: str,
) -> None:
    one = TWO_COMMUNES.split("  - id: dong-son")[0]
    with psycopg.connect(db_url) as conn:
        registry.import_registry(conn, registry_file.parse_yaml(one), None)
        assert village_terms.deployment_term(conn) == "ấp"
        registry.import_registry(
            conn, registry_file.parse_yaml(one.replace("    village_term: ấp\n", "")), None
        )
        assert village_terms.commune_terms(conn) == {"thoai-giang": None}  # "Trung Bình" says nothing
        # A CSV row names no commune word: it leaves the YAML's alone.
        registry.import_registry(conn, registry_file.parse_yaml(one), None)
        csv_text = "commune,id,kind,village\nthoai-giang,spk-csv,speaker,trung-binh\n"
        registry.import_registry(conn, registry_file.parse_csv(csv_text), None, names_authoritative=False)
        assert village_terms.commune_terms(conn) == {"thoai-giang": "ấp"}


@pytest.mark.parametrize("value", ["", "'   '", "42", "[ấp]", "x" * 41])
def test_a_village_term_that_is_not_a_short_word_is_refused_at_its_line(value: str) -> None:
    text = TWO_COMMUNES.replace("village_term: ấp", f"village_term: {value or repr(value)}")
    with pytest.raises(InvalidInput) as err:
        registry_file.parse_yaml(text)
    assert "registry:2: commune thoai-giang: village_term" in str(err.value)
