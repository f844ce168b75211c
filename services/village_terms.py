"""What a commune calls its villages (ấp in the Mekong delta, xóm or thôn in the north, bản in the
mountains, tổ dân phố in towns): the registry's `village_term:` when it says, else read from the
villages' own names ("Ấp Trung Bình", "Xóm 4")."""

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


def commune_terms(conn: psycopg.Connection) -> dict[str, str | None]:
    """Each commune's word for its villages: its registry's, else the one its villages' names share."""
    names: dict[str, list[str]] = {}
    for commune_id, name in conn.execute("SELECT commune_id, name FROM villages"):
        names.setdefault(commune_id, []).append(name)
    return {
        cid: said or (term_of(names[cid]) if cid in names else None)
        for cid, said in conn.execute("SELECT id, village_term FROM communes")
    }


def deployment_term(conn: psycopg.Connection) -> str | None:
    """The one word every commune of the deployment uses (the page shows one word for all), or None."""
    terms = set(commune_terms(conn).values())
    return terms.pop() if len(terms) == 1 else None
