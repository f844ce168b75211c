"""Settings of the gateway process."""

from pathlib import Path

from pydantic import model_validator

from services import media
from services.settings import IocSettings


class GatewaySettings(IocSettings):
    """The gateway: HTTP API, live feed, dashboard."""

    # Set when the gateway is served over HTTPS (behind the reverse proxy): cookies are then
    # sent only over TLS.
    cookie_secure: bool = False
    # Origins allowed to call the API from a browser; empty keeps CORS closed.
    cors_origins: list[str] = []
    # Public base URL, used in alert links and NGSI-LD @context; defaults to the request's.
    public_url: str | None = None
    # Where uploaded broadcast audio is kept, by sha256 (default: IOC_DATA_DIR/media).
    media_dir: Path | None = None
    # The largest audio file POST /api/v1/media takes (413 above), in bytes: SPEC §9's 50 MB by
    # default. A 10-minute bulletin at 128 kbit/s is about 10 MB; lower it where speakers fetch
    # over a slow 4G link. The request body limit of that path follows it (plus the form's framing).
    media_max_bytes: int = media.MAX_BYTES
    # Alert channels (names in IOC_ALERTS_FILE, comma-separated) an emergency broadcast also goes
    # out to as text when its request names none.
    broadcast_emergency_channels: str = ""
    # Live feed (/ws/live): fallback poll of the feed table when a notification is lost, and the
    # most messages queued for one client before it is disconnected as too slow.
    live_poll_s: float = 1.0
    live_queue: int = 20000
    # Compress live-feed frames for clients that offer permessage-deflate (every browser): about
    # 11x less traffic for a dashboard on a slow link, for about twice the gateway's CPU per
    # client. Off for a room of dashboards on a LAN where the gateway's CPU matters more.
    live_deflate: bool = True
    # Dashboard map background, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png; unset draws
    # a plan from device coordinates with no tiles (works without internet).
    map_tile_url: str | None = None
    # Offline background the commune installs: an MBTiles file of raster tiles of its area and a
    # GeoJSON file of village boundaries (docs/live-feed.md). Used before `map_tile_url`.
    map_mbtiles: str | None = None
    map_boundaries: str | None = None
    # Load (issue 13): the requests served at once, how many more may wait for a place and for
    # how long; beyond that the gateway answers 503 with Retry-After at once. Keep
    # `http_max_inflight` below the 40 worker threads that run the routes.
    http_max_inflight: int = 32
    http_queue: int = 256
    http_queue_wait_s: float = 5.0
    # Every 503 of the load limit takes at least this long: a client that retries at once,
    # ignoring Retry-After, is slowed to it instead of taking the gateway's CPU with refusals
    # (at 1,000 hammering connections this tripled the requests still served).
    http_refusal_delay_s: float = 1.0
    # Database connections of this gateway, and the longest a request waits for one (then 503).
    db_pool_size: int = 16
    db_wait_s: float = 5.0
    # Request bodies: at most this many bytes (413), by path prefix where a route takes more;
    # a body must arrive within `http_body_timeout_s` plus one second per `http_body_min_bps`
    # bytes received (408), so a client trickling bytes cannot hold a socket for long.
    http_body_max_bytes: int = 1024 * 1024
    # (/api/v1/media: media_max_bytes + 64 KiB unless named here)
    http_body_max_bytes_by_path: dict[str, int] = {}
    http_body_timeout_s: float = 10.0
    http_body_min_bps: int = 50_000
    # A connection must finish sending a request's headers within this many seconds; past this
    # many open connections uvicorn answers 503 itself (keep it far above http_max_inflight).
    http_header_timeout_s: float = 10.0
    http_max_connections: int = 4096

    @model_validator(mode="after")
    def _media_body_limit(self) -> "GatewaySettings":
        self.http_body_max_bytes_by_path.setdefault(
            "/api/v1/media", self.media_max_bytes + media.FORM_OVERHEAD
        )
        return self
