"""What a commune calls its villages (ấp in the Mekong delta, xóm or thôn in the north, bản in the
mountains, tổ dân phố in towns), read from the villages' own names: "Ấp Trung Bình", "Xóm 4"."""

from collections.abc import Iterable

import psycopg

# Longer terms first: "tổ dân phố" before "tổ".
TERMS = ("tổ dân phố", "khu phố", "ấp", "xóm", "thôn", "bản", "buôn", "làng", "khóm", "tổ")


def term_of(names: Iterable[str]) -> str | None:
    """The one term every name starts with, or None when they disagree or one names none."""
    found = set()
    for name in names:
        low = name.strip().lower()
        term = next((t for t in TERMS if low.startswith(t + " ")), None)
        if term is None:
            return None
        found.add(term)
    return found.pop() if len(found) == 1 else None


def deployment_term(conn: psycopg.Connection) -> str | None:
    """The term of every village of the deployment (the page shows one word for all)."""
    return term_of(r[0] for r in conn.execute("SELECT name FROM villages"))
