"""Content negotiation by `Accept` (RFC 9110 §12.5.1), shared by the NGSI-LD view and the share API."""


def choose(accept: str, offered: tuple[str, ...]) -> str | None:
    """The media type to answer in (RFC 9110 §12.5.1, CIM 009 §6.3.4), or None (406).

    The most specific range that matches a type gives its weight; the highest weight wins and
    a tie goes to the earlier type of `offered`. A weight that is not a number counts as 1."""
    if not accept.strip():
        return offered[0]
    ranges: list[tuple[str, float]] = []
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 1.0
        ranges.append((media.lower(), q))
    best: tuple[float, int] | None = None
    chosen = None
    for i, media in enumerate(offered):
        main = media.split("/")[0]
        weight = None
        for pattern in (media, f"{main}/*", "*/*"):
            hits = [q for r, q in ranges if r == pattern]
            if hits:
                weight = max(hits)
                break
        if weight is None or weight <= 0:
            continue
        rank = (weight, -i)
        if best is None or rank > best:
            best, chosen = rank, media
    return chosen
