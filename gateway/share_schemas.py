"""Schemas of the data-sharing API (the province, neighbouring communes): stable, documented in English and Vietnamese.

Field names and meanings here are a contract with other systems: add fields, never rename or drop.
"""

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
Kind = Literal["camera", "speaker", "eboard", "wifi", "gateway"]
StateName = Literal["online", "offline", "unknown", "maintenance", "auth_failed"]
ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
TIME_DOC = (
    "ISO 8601 time; without an offset it is UTC (e.g. 2026-11-01T08:00:00+07:00). / "
    "Thời điểm ISO 8601; không ghi múi giờ thì hiểu là UTC."
)


def _f(en: str, vi: str, example: Any = None, **kw: Any) -> Any:
    return Field(description=f"{en} / {vi}", examples=[example] if example is not None else None, **kw)


class Page(BaseModel, Generic[T]):
    items: list[T] = _f("rows of this page", "các dòng của trang này")
    next_cursor: str | None = _f(
        "give as `cursor` for the next page; null on the last page (never null on /changes)",
        "truyền vào `cursor` để lấy trang sau; null ở trang cuối (riêng /changes luôn có giá trị)",
    )


class ChangesPage(BaseModel):
    items: list["ChangeItem"] = _f("state changes in seq order", "các lần đổi trạng thái theo thứ tự seq")
    next_cursor: str = _f(
        "where to resume: always set, also when the page is empty",
        "vị trí để lấy tiếp: luôn có, kể cả khi trang rỗng",
        "WzEyMzRd",
    )


class DeviceItem(BaseModel):
    device_id: str = _f("device id, unique in the deployment", "mã thiết bị", "cam-ubnd-1")
    commune: str = _f("commune id", "mã xã", "thoai-giang")
    village: str | None = _f("village (ấp, xóm) id", "mã ấp/xóm", "trung-binh")
    kind: Kind = _f("device kind", "loại thiết bị", "camera")
    name: str | None = _f("display name", "tên hiển thị", "Camera cổng UBND")
    lat: float | None = _f("latitude, WGS84", "vĩ độ", 10.39)
    lon: float | None = _f("longitude, WGS84", "kinh độ", 105.33)
    parent: str | None = _f(
        "device this one depends on for its network",
        "thiết bị mạng mà thiết bị này phụ thuộc",
        "gw-trung-binh",
    )
    former_commune: str | None = _f(
        "the commune its village belonged to before the 2025 reform, by name (null: none recorded)",
        "xã cũ (trước sắp xếp năm 2025) của ấp/xóm",
        "Xã Thoại Giang",
        default=None,
    )


class StatusItem(BaseModel):
    device_id: str = _f("device id", "mã thiết bị", "spk-trung-binh-1")
    commune: str = _f("commune id", "mã xã", "thoai-giang")
    village: str | None = _f("village id", "mã ấp/xóm", "trung-binh")
    kind: Kind = _f("device kind", "loại thiết bị", "speaker")
    state: StateName = _f(
        "online, offline, unknown (never heard), maintenance, auth_failed (camera refuses our password)",
        "trực tuyến, mất kết nối, chưa rõ, bảo trì, sai mật khẩu",
        "online",
    )
    since: datetime | None = _f("when the device entered this state", "thời điểm vào trạng thái này")
    last_seen: datetime | None = _f("receive time of its last status", "lúc nhận bản tin trạng thái gần nhất")
    metrics: dict[str, Any] = _f(
        "fields of its last status (per kind, SPEC §4)",
        "các trường của bản tin trạng thái gần nhất",
        {"volume": 70, "playing": False},
    )
    former_commune: str | None = _f(
        "the commune its village belonged to before the 2025 reform, by name (null: none recorded)",
        "xã cũ (trước sắp xếp năm 2025) của ấp/xóm",
        "Xã Thoại Giang",
        default=None,
    )


class SampleItem(BaseModel):
    device_id: str = _f("device id", "mã thiết bị", "spk-trung-binh-1")
    ts: datetime = _f("time of the sample (device's ts, or receive time)", "thời điểm của mẫu")
    received_at: datetime = _f("when the IOC received it", "lúc trung tâm nhận được")
    metrics: dict[str, Any] = _f("the status fields", "các trường trạng thái", {"volume": 70})


class MetricStats(BaseModel):
    min: float
    avg: float
    max: float


class BucketItem(BaseModel):
    device_id: str = _f("device id", "mã thiết bị", "spk-trung-binh-1")
    bucket: datetime = _f("start of the bucket", "đầu khoảng thời gian")
    n: int = _f("samples stored in the bucket", "số mẫu trong khoảng", 12)
    online_share: float | None = _f(
        "share of the bucket's time online, 0..1; null in the future",
        "tỉ lệ thời gian trực tuyến trong khoảng, 0..1",
        0.98,
    )
    known_share: float | None = _f(
        "share of the bucket's time in which the device's state was known (0: not heard yet, no data)",
        "tỉ lệ thời gian đã biết trạng thái thiết bị (0: chưa từng nhận tin, không có dữ liệu)",
        1.0,
    )
    metrics: dict[str, MetricStats] = _f(
        "min/avg/max of each numeric status field", "nhỏ nhất/trung bình/lớn nhất của mỗi trường số"
    )


class KindCount(BaseModel):
    devices: int = _f("devices of this kind", "số thiết bị loại này", 11)
    online_now: int = _f("of which online now", "số đang trực tuyến", 11)


class AvailabilityItem(BaseModel):
    commune: str = _f("commune id", "mã xã", "thoai-giang")
    device_id: str | None = _f("device (group_by=device)", "thiết bị (khi group_by=device)")
    village: str | None = _f("village (group_by=device|village)", "ấp/xóm", "trung-binh")
    kind: str | None = _f("kind (group_by=device|kind)", "loại thiết bị", "speaker")
    availability_pct: float | None = _f(
        "online / (online + offline) time in %, auth_failed counting as offline; maintenance and unknown "
        "time excluded; null when there was neither",
        "tỉ lệ % thời gian hoạt động = trực tuyến / (trực tuyến + mất kết nối); không tính thời gian bảo trì "
        "và chưa rõ",
        99.5,
    )
    online_s: float = _f("seconds online", "số giây trực tuyến")
    offline_s: float = _f("seconds offline or auth_failed", "số giây mất kết nối hoặc sai mật khẩu")
    maintenance_s: float = _f("seconds in maintenance", "số giây bảo trì")
    unknown_s: float = _f("seconds unknown", "số giây chưa rõ")
    devices: int = _f("devices in the group now", "số thiết bị trong nhóm", 11)
    devices_online_now: int = _f("of which online now", "số đang trực tuyến", 11)
    by_kind: dict[str, KindCount] | None = _f(
        "group_by=village: devices and online now per kind", "theo từng loại thiết bị (group_by=village)"
    )
    villages: int | None = _f(
        "group_by=kind: villages with a device of this kind", "số ấp/xóm có thiết bị loại này", 11
    )
    villages_all_online_now: int | None = _f(
        "group_by=kind: villages where every device of this kind is online now "
        '("loudspeakers working in 11/11 xóm")',
        'số ấp/xóm mà mọi thiết bị loại này đang hoạt động ("loa hoạt động 11/11 xóm")',
        11,
    )
    former_commune: str | None = _f(
        "group_by=former_commune: the former commune (before the 2025 reform) of the group's villages; "
        "null for villages with none recorded",
        "xã cũ (trước sắp xếp năm 2025), khi group_by=former_commune",
        "Xã Thoại Giang",
        default=None,
    )


class AlertItem(BaseModel):
    id: int = _f("alert id", "mã cảnh báo", 42)
    rule: str = _f("rule that raised it", "quy tắc cảnh báo", "offline")
    device_id: str | None = _f("device", "thiết bị", "cam-ubnd-1")
    commune: str | None = _f("commune id", "mã xã", "thoai-giang")
    village: str | None = _f("village id", "mã ấp/xóm", "trung-binh")
    kind: str | None = _f("device kind", "loại thiết bị", "camera")
    severity: Literal["info", "warning", "critical"] = _f("severity", "mức độ", "critical")
    state: Literal["open", "acked", "resolved"] = _f(
        "open, acked or resolved", "mở, đã nhận, đã xử lý", "open"
    )
    message: str = _f("what happened", "nội dung")
    affected: list[str] = _f("devices down under this one", "các thiết bị phía sau bị ảnh hưởng")
    since: datetime | None = _f("when the condition began", "lúc sự cố bắt đầu")
    opened_at: datetime = _f("when the alert opened", "lúc mở cảnh báo")
    acked_at: datetime | None = _f("when a technician acknowledged it", "lúc kỹ thuật viên xác nhận")
    resolved_at: datetime | None = _f("when it resolved", "lúc đã xử lý xong")
    updated_at: datetime | None = _f("last change", "lần thay đổi gần nhất")


class ChangeItem(BaseModel):
    seq: int = _f("position in the change log (gap-free, in commit order)", "số thứ tự trong nhật ký", 1234)
    device_id: str = _f("device id", "mã thiết bị", "cam-ubnd-1")
    commune: str = _f("commune id", "mã xã", "thoai-giang")
    village: str | None = _f("village id", "mã ấp/xóm", "trung-binh")
    kind: Kind = _f("device kind", "loại thiết bị", "camera")
    state: StateName = _f("new state", "trạng thái mới", "offline")
    prev_state: str | None = _f("state before", "trạng thái trước", "online")
    at: datetime = _f("when it changed", "thời điểm thay đổi")
    reason: str | None = _f("why", "lý do", "no status for 95 s")


class ListQuery(BaseModel):
    """Filters and paging every share list takes; unknown parameters are refused (400)."""

    model_config = ConfigDict(extra="forbid")

    commune: str | None = _f("only this commune", "chỉ xã này", "thoai-giang", pattern=ID, default=None)
    village: str | None = _f("only this village", "chỉ ấp/xóm này", "trung-binh", pattern=ID, default=None)
    kind: Kind | None = _f("only this kind", "chỉ loại thiết bị này", "speaker", default=None)
    former_commune: str | None = _f(
        "only villages of this former commune (its name, before the 2025 reform)",
        "chỉ các ấp/xóm thuộc xã cũ này",
        "Xã Thoại Giang",
        max_length=200,
        default=None,
    )
    limit: int = _f(
        "rows per page (max 10000)", "số dòng mỗi trang (tối đa 10000)", 1000, ge=1, le=10000, default=1000
    )
    cursor: str | None = _f(
        "`next_cursor` of the previous page", "`next_cursor` của trang trước", max_length=400, default=None
    )
    format: Literal["json", "csv"] | None = _f(
        "csv for CSV (same as Accept: text/csv)", "csv để nhận CSV", "csv", default=None
    )


class HistoryQuery(ListQuery):
    device: str | None = _f(
        "one device; all devices in scope when absent (raw samples only)",
        "một thiết bị; bỏ trống = mọi thiết bị (chỉ dữ liệu thô)",
        "spk-trung-binh-1",
        pattern=ID,
        default=None,
    )
    from_: str | None = _f(
        TIME_DOC + " Default: to − 24 h.",
        "Mặc định: 24 giờ trước.",
        alias="from",
        max_length=64,
        default=None,
    )
    to: str | None = _f(TIME_DOC + " Default: now.", "Mặc định: bây giờ.", max_length=64, default=None)
    bucket: str | None = _f(
        "bucket width like 5m, 1h, 1d (needs device); without it, the raw samples",
        "độ rộng khoảng như 5m, 1h, 1d (cần device); bỏ trống = dữ liệu thô",
        "1h",
        pattern=r"^[0-9]{1,9}[smhd]$",
        default=None,
    )


class AvailabilityQuery(ListQuery):
    from_: str | None = _f(
        TIME_DOC + " Default: to − 24 h.",
        "Mặc định: 24 giờ trước.",
        alias="from",
        max_length=64,
        default=None,
    )
    to: str | None = _f(TIME_DOC + " Default: now.", "Mặc định: bây giờ.", max_length=64, default=None)
    group_by: Literal["device", "village", "kind", "former_commune"] = _f(
        "one row per device, village, (commune, kind) or (commune, former commune)",
        "gộp theo thiết bị, ấp/xóm, loại hoặc xã cũ",
        "village",
        default="village",
    )


class AlertsQuery(ListQuery):
    since: str | None = _f(
        "alerts opened, acknowledged or resolved at or after this time. " + TIME_DOC,
        "cảnh báo mở, xác nhận hoặc xử lý từ thời điểm này",
        max_length=64,
        default=None,
    )


ChangesPage.model_rebuild()


class ErrorDetail(BaseModel):
    code: str = _f("machine-readable code", "mã lỗi", "forbidden")
    message: str = _f(
        "what went wrong, for people", "mô tả lỗi", "this key has no access to commune vong-the"
    )
    detail: Any | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad parameter, date, range or cursor / tham số không hợp lệ"},
    401: {"model": ErrorBody, "description": "missing, unknown, revoked or expired key / khóa không hợp lệ"},
    403: {"model": ErrorBody, "description": "outside the key's communes or kinds / ngoài phạm vi của khóa"},
    404: {"model": ErrorBody, "description": "no such device / không có thiết bị này"},
    429: {
        "model": ErrorBody,
        "description": "over the key's rate; see Retry-After / vượt giới hạn tần suất",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    },
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged since the ETag given in If-None-Match"}
}
