"""The push worker's side of NGSI-LD notifications: where each goes, and what each attempt came to
(services/push/senders.py calls these for every outbox row of target `ngsi:<subscription id>`)."""

from datetime import datetime

import psycopg

from services.ngsi_subscriptions.store import Target

LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
_TARGET = """
SELECT s.doc -> 'notification' -> 'endpoint', s.context_url FROM ngsi_subscriptions s
JOIN api_keys k ON k.id = s.key_id
WHERE s.id = %s AND s.is_active AND (s.expires_at IS NULL OR s.expires_at > now())
  AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
"""


async def notification_target(conn: psycopg.AsyncConnection, sub_id: str) -> Target | None:
    """The endpoint and headers of a subscription; None when it is gone, paused or expired, or its
    key was revoked or has expired (its queued notifications are then dropped)."""
    row = await (await conn.execute(_TARGET, (sub_id,))).fetchone()
    if row is None:
        return None
    endpoint, context_url = row
    headers: dict[str, str] = {}
    if endpoint.get("accept") == "application/ld+json":
        headers["Content-Type"] = "application/ld+json"
    else:
        # CIM 009 §5.11: JSON notifications link the @context instead of carrying it.
        headers["Content-Type"] = "application/json"
        headers["Link"] = f"<{context_url}>; {LINK_REL}"
    for kv in endpoint.get("receiverInfo") or ():
        headers[kv["key"]] = kv["value"]
    return Target(endpoint["uri"], headers)


async def record_delivery(
    conn: psycopg.AsyncConnection, sub_id: str, ok: bool, error: str | None, at: datetime
) -> None:
    """Count an attempt in the subscription's status (timesSent, lastNotification, lastSuccess,
    lastFailure), in the transaction that marks the outbox row."""
    await conn.execute(
        "UPDATE ngsi_subscriptions SET times_sent = times_sent + 1, last_notification = %(at)s,"
        " last_success = CASE WHEN %(ok)s THEN %(at)s ELSE last_success END,"
        " last_failure = CASE WHEN %(ok)s THEN last_failure ELSE %(at)s END,"
        " last_failure_reason = CASE WHEN %(ok)s THEN last_failure_reason ELSE %(error)s END"
        " WHERE id = %(id)s",
        {"at": at, "ok": ok, "error": error, "id": sub_id},
    )
