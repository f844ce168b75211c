"""The word a commune uses for its villages, read from their names."""

import pytest

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
