"""Settings of the gateway process."""

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
