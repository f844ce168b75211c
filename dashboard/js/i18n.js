// Every string of the page, Vietnamese first. Times are shown in the deployment's time zone.

const DICT = {
  vi: {
    "app.title": "Trung tâm điều hành xã",
    "login.subtitle": "Đăng nhập để theo dõi thiết bị của xã",
    "login.username": "Tên đăng nhập",
    "login.password": "Mật khẩu",
    "login.submit": "Đăng nhập",
    "login.failed": "Sai tên đăng nhập hoặc mật khẩu",
    "nav.overview": "Tổng quan",
    "nav.map": "Bản đồ",
    "nav.devices": "Thiết bị",
    "nav.report": "Báo cáo",
    "nav.logout": "Đăng xuất",
    "conn.live": "Trực tiếp",
    "conn.connecting": "Đang kết nối…",
    "conn.offline": "Mất kết nối máy chủ",
    "state.online": "Trực tuyến",
    "state.offline": "Mất kết nối",
    "state.unknown": "Chưa rõ",
    "state.maintenance": "Bảo trì",
    "state.auth_failed": "Sai mật khẩu",
    "kind.camera": "Camera",
    "kind.speaker": "Loa",
    "kind.eboard": "Bảng điện tử",
    "kind.wifi": "Wi-Fi",
    "kind.gateway": "Bộ định tuyến",
    "kinds.camera": "Camera",
    "kinds.speaker": "Loa",
    "kinds.eboard": "Bảng điện tử",
    "kinds.wifi": "Điểm Wi-Fi",
    "kinds.gateway": "Bộ định tuyến",
    "ov.total": "Tổng thiết bị",
    "ov.villages": "Theo xóm / ấp",
    "ov.village": "Xóm / ấp",
    "ov.alerts": "Cảnh báo đang mở",
    "ov.no_alerts": "Không có cảnh báo nào đang mở",
    "ov.changes": "Thay đổi trong 1 giờ qua",
    "ov.no_changes": "Không có thay đổi nào trong 1 giờ qua",
    "ov.kind_summary": "{kind} hoạt động {ok}/{n} xóm",
    "ov.working": "Theo loại (đang hoạt động)",
    "alert.acked": "đã xác nhận",
    "alert.ack": "Xác nhận",
    "alert.affected": "{n} thiết bị phía sau",
    "sev.critical": "Nghiêm trọng",
    "sev.warning": "Cảnh báo",
    "sev.info": "Thông tin",
    "change.state": "{from} → {to}",
    "map.plan": "Sơ đồ theo tọa độ thiết bị (không cần Internet)",
    "map.no_coords": "{n} thiết bị chưa có tọa độ được xếp quanh xóm của chúng",
    "map.legend": "Chú giải",
    "list.search": "Tìm theo tên, mã, xóm…",
    "list.all_kinds": "Mọi loại",
    "list.all_states": "Mọi trạng thái",
    "list.all_villages": "Mọi xóm / ấp",
    "list.count": "{n} / {total} thiết bị",
    "list.csv": "Tải CSV",
    "col.state": "Trạng thái",
    "col.name": "Thiết bị",
    "col.kind": "Loại",
    "col.village": "Xóm / ấp",
    "col.last_seen": "Lần cuối nhận tin",
    "col.since": "Từ lúc",
    "col.reason": "Lý do",
    "col.metrics": "Số đo",
    "dev.back": "← Danh sách thiết bị",
    "dev.not_found": "Không tìm thấy thiết bị",
    "dev.history": "Lịch sử",
    "dev.state_band": "Tỷ lệ trực tuyến",
    "dev.events": "Sự kiện",
    "dev.no_events": "Không có sự kiện trong khoảng thời gian này",
    "dev.no_history": "Chưa có số liệu trong khoảng thời gian này",
    "dev.metrics": "Số đo gần nhất",
    "dev.links": "Luồng video / ảnh chụp",
    "dev.parent": "Phụ thuộc",
    "dev.period": "Khoảng thời gian",
    "period.6h": "6 giờ",
    "period.24h": "24 giờ",
    "period.7d": "7 ngày",
    "period.30d": "30 ngày",
    "ev.time": "Thời gian",
    "ev.type": "Loại sự kiện",
    "ev.severity": "Mức độ",
    "ev.message": "Nội dung",
    "rep.title": "Báo cáo mức độ sẵn sàng",
    "rep.from": "Từ ngày",
    "rep.to": "Đến ngày",
    "rep.group": "Nhóm theo",
    "rep.by_village": "Xóm / ấp",
    "rep.by_kind": "Loại thiết bị",
    "rep.by_device": "Thiết bị",
    "rep.run": "Xem báo cáo",
    "rep.csv": "Tải CSV",
    "rep.availability": "Sẵn sàng",
    "rep.devices": "Số thiết bị",
    "rep.online_now": "Đang trực tuyến",
    "rep.villages_ok": "Xóm hoạt động đủ",
    "rep.online_h": "Giờ trực tuyến",
    "rep.offline_h": "Giờ mất kết nối",
    "rep.maint_h": "Giờ bảo trì",
    "rep.error": "Không lấy được báo cáo: {msg}",
    "rep.empty": "Không có dữ liệu",
    "rep.now": "Hiện tại",
    "misc.never": "chưa bao giờ",
    "misc.ago_s": "{n} giây trước",
    "misc.ago_m": "{n} phút trước",
    "misc.ago_h": "{n} giờ trước",
    "misc.ago_d": "{n} ngày trước",
    "misc.loading": "Đang tải…",
    "misc.error": "Lỗi: {msg}",
    "misc.none": "—",
    "nav.alerts": "Cảnh báo",
    "nav.maintenance": "Bảo trì",
    "role.admin": "Quản trị viên",
    "role.operator": "Điều hành viên",
    "role.technician": "Kỹ thuật viên",
    "role.viewer": "Người xem",
    "misc.cancel": "Hủy",
    "misc.sending": "Đang gửi…",
    "misc.more": "Xem thêm",
    "misc.csv": "Tải CSV",
    "ov.all_alerts": "Tất cả cảnh báo →",
    "al.title": "Cảnh báo",
    "al.tab.open": "Đang mở",
    "al.tab.acked": "Đã xác nhận",
    "al.tab.resolved": "Đã xử lý",
    "al.empty.open": "Không có cảnh báo nào đang mở",
    "al.empty.acked": "Không có cảnh báo nào đã xác nhận mà chưa xử lý",
    "al.empty.resolved": "Chưa có cảnh báo nào đã xử lý",
    "al.rule": "Quy tắc",
    "al.device": "Thiết bị",
    "al.village": "Xóm / ấp",
    "al.severity": "Mức độ",
    "al.opened": "Mở lúc",
    "al.acked": "Xác nhận lúc",
    "al.acked_by": "Người xác nhận",
    "al.resolved": "Xử lý lúc",
    "al.resolved_by": "Người xử lý",
    "al.resolved_auto": "tự hết khi thiết bị trở lại bình thường",
    "al.assignee": "Giao cho",
    "al.unassigned": "chưa giao",
    "al.comment": "Ghi chú",
    "al.affected": "Thiết bị bị ảnh hưởng phía sau ({n})",
    "al.ioc_wide": "Toàn hệ thống",
    "al.ack": "Xác nhận",
    "al.assign": "Giao việc",
    "al.resolve": "Đã xử lý xong",
    "al.comment_ph": "Ghi chú (không bắt buộc)",
    "al.username": "Giao cho (tên đăng nhập)",
    "al.me": "tôi",
    "al.do_ack": "Xác nhận cảnh báo",
    "al.do_assign": "Giao việc",
    "al.do_resolve": "Đánh dấu đã xử lý",
    "al.view_only": "Tài khoản «Người xem» chỉ xem được cảnh báo.",
    "al.failed": "Không thực hiện được: {msg}",
    "al.no_user": "không có tài khoản «{name}» — hãy chọn một người trong danh sách",
    "al.count": "{n} cảnh báo",
    "rule.offline": "Mất kết nối",
    "rule.flapping": "Kết nối chập chờn",
    "rule.broker_lost": "IOC mất kết nối broker MQTT",
    "rule.camera_tamper": "Camera bị che / xoay / phá",
    "rule.camera_signal_loss": "Camera mất tín hiệu hình",
    "rule.camera_storage_failure": "Camera lỗi bộ nhớ lưu trữ",
    "rule.camera_clock_skew": "Camera lệch giờ",
    "rule.camera_auth_failed": "Camera sai mật khẩu",
    "rule.eboard_screen_off": "Bảng điện tử tắt màn hình",
    "rule.speaker_battery_low": "Loa sắp hết pin",
    "rule.uplink_down": "Mất đường truyền Internet",
    "rule.temperature_high": "Nhiệt độ cao",
    // What is wrong, after the device's name (services/alerts/messages.py says the same to channels).
    "am.offline": "mất kết nối",
    "am.flapping": "chập chờn: mất kết nối {flaps} lần liên tiếp",
    "am.flapping.plain": "kết nối chập chờn",
    "am.broker_lost": "IOC mất kết nối với broker MQTT: trạng thái thiết bị tạm dừng cập nhật",
    "am.camera_tamper": "bị che, xoay hoặc phá (tamper)",
    "am.camera_signal_loss": "mất tín hiệu hình ảnh",
    "am.camera_storage_failure": "lỗi bộ nhớ lưu trữ",
    "am.camera_clock_skew": "lệch giờ {value} giây (ngưỡng {threshold} giây)",
    "am.camera_clock_skew.plain": "lệch giờ",
    "am.camera_auth_failed": "từ chối tài khoản (sai mật khẩu)",
    "am.eboard_screen_off": "tắt màn hình trong giờ hoạt động ({on_hours})",
    "am.eboard_screen_off.plain": "tắt màn hình trong giờ hoạt động",
    "am.speaker_battery_low": "đang chạy pin, còn {value}% (ngưỡng {threshold}%)",
    "am.speaker_battery_low.plain": "đang chạy pin, pin yếu",
    "am.uplink_down": "mất đường truyền Internet (uplink)",
    "am.temperature_high": "nhiệt độ cao {value} °C (ngưỡng {threshold} °C)",
    "am.temperature_high.plain": "nhiệt độ cao",
    "am.threshold": "{metric} = {value} (ngưỡng {op} {threshold})",
    "mt.title": "Lịch bảo trì",
    "mt.new": "Tạo lịch bảo trì",
    "mt.scope": "Phạm vi",
    "mt.scope_device": "Một thiết bị",
    "mt.scope_area": "Xóm / ấp, loại thiết bị",
    "mt.commune": "Xã",
    "mt.device": "Thiết bị",
    "mt.village": "Xóm / ấp",
    "mt.all_villages": "Cả xã",
    "mt.kind": "Loại thiết bị",
    "mt.all_kinds": "Mọi loại",
    "mt.starts": "Bắt đầu",
    "mt.ends": "Kết thúc",
    "mt.tz_hint": "Giờ theo múi giờ {tz}",
    "mt.reason": "Lý do",
    "mt.reason_ph": "Ví dụ: thay bộ nguồn loa ấp Trung Bình",
    "mt.rrule": "Lặp lại (RRULE, không bắt buộc)",
    "mt.rrule_ph": "ví dụ FREQ=WEEKLY;BYDAY=TU",
    "mt.rrule_help": "Mỗi lần lặp dài bằng lần đầu, tính theo giờ của xã.",
    "mt.create": "Tạo lịch",
    "mt.created": "Đã tạo lịch bảo trì #{id}",
    "mt.deleted": "Đã xóa lịch bảo trì #{id}",
    "mt.delete": "Xóa",
    "mt.confirm_delete": "Xóa lịch này? Thiết bị ra khỏi trạng thái bảo trì ngay.",
    "mt.empty": "Chưa có lịch bảo trì nào",
    "mt.status": "Tình trạng",
    "mt.active": "Đang diễn ra",
    "mt.upcoming": "Sắp tới",
    "mt.ended": "Đã kết thúc",
    "mt.repeating": "Định kỳ",
    "mt.repeat": "Lặp lại",
    "mt.once": "Một lần",
    "mt.created_by": "Người tạo",
    "mt.view_only": "Chỉ quản trị viên được tạo hoặc xóa lịch bảo trì.",
    "mt.refused": "Máy chủ không nhận lịch này:",
    "mt.server_said": "Máy chủ trả lời: {msg}",
    "mt.err_end_before_start": "Thời điểm kết thúc phải sau thời điểm bắt đầu.",
    "mt.err_rrule": "Quy tắc lặp (RRULE) không hợp lệ.",
    "mt.err_device": "Không có thiết bị này (hoặc thiết bị đã ngừng sử dụng).",
    "mt.err_village": "Không có xóm / ấp này trong xã.",
    "mt.err_commune": "Không có xã này.",
    "mt.whole": "Cả {name}",
    "freq.HOURLY": "hằng giờ",
    "freq.DAILY": "hằng ngày",
    "freq.WEEKLY": "hằng tuần",
    "freq.MONTHLY": "hằng tháng",
    "freq.YEARLY": "hằng năm",
    "dev.no_data": "Không có dữ liệu",
    "chart.min": "nhỏ nhất",
    "chart.avg": "trung bình",
    "chart.max": "lớn nhất",
    "dev.with_data": "{v}% (có dữ liệu {k}% thời gian)",
    "band.ok": "≥ 99,5 %",
    "band.good": "90–99,5 %",
    "band.poor": "50–90 %",
    "band.bad": "< 50 %",
    "metric.volume": "Âm lượng",
    "metric.playing": "Đang phát",
    "metric.source": "Nguồn phát",
    "metric.rssi_dbm": "Cường độ sóng",
    "metric.power": "Nguồn điện",
    "metric.battery_pct": "Pin",
    "metric.temperature_c": "Nhiệt độ",
    "metric.firmware": "Phiên bản firmware",
    "metric.screen_on": "Màn hình bật",
    "metric.brightness_pct": "Độ sáng",
    "metric.content_id": "Nội dung đang chiếu",
    "metric.errors": "Lỗi",
    "metric.clients": "Số máy đang kết nối",
    "metric.uptime_s": "Thời gian chạy liên tục",
    "metric.uplink_up": "Đường truyền Internet",
    "metric.rx_bytes": "Dữ liệu nhận",
    "metric.tx_bytes": "Dữ liệu gửi",
    "metric.channel": "Kênh Wi-Fi",
    "metric.cpu_pct": "Tải CPU",
    "metric.mem_pct": "Bộ nhớ đã dùng",
    "metric.rtt_ms": "Độ trễ",
    "metric.clock_offset_s": "Lệch đồng hồ",
    "metric.reachable": "Kết nối được",
    "metric.recording": "Đang ghi hình",
    "metric.tamper": "Bị can thiệp",
    "metric.motion": "Có chuyển động",
    "metric.manufacturer": "Hãng sản xuất",
    "metric.model": "Mẫu",
    "metric.auth_failed": "Sai mật khẩu",
    "metric.camera_ts": "Giờ của camera",
    "power.mains": "điện lưới",
    "power.battery": "pin",
    "power.solar": "năng lượng mặt trời",
    "dur.d": "{d} ngày {h} giờ",
    "dur.h": "{h} giờ {m} phút",
    "dur.m": "{m} phút",
  },
  en: {
    "app.title": "Commune Operations Center",
    "login.subtitle": "Sign in to watch the commune's devices",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.failed": "Wrong username or password",
    "nav.overview": "Overview",
    "nav.map": "Map",
    "nav.devices": "Devices",
    "nav.report": "Report",
    "nav.logout": "Sign out",
    "conn.live": "Live",
    "conn.connecting": "Connecting…",
    "conn.offline": "Server unreachable",
    "state.online": "Online",
    "state.offline": "Offline",
    "state.unknown": "Unknown",
    "state.maintenance": "Maintenance",
    "state.auth_failed": "Auth failed",
    "kind.camera": "Camera",
    "kind.speaker": "Speaker",
    "kind.eboard": "E-board",
    "kind.wifi": "Wi-Fi",
    "kind.gateway": "Gateway",
    "kinds.camera": "Cameras",
    "kinds.speaker": "Speakers",
    "kinds.eboard": "E-boards",
    "kinds.wifi": "Wi-Fi points",
    "kinds.gateway": "Gateways",
    "ov.total": "Devices",
    "ov.villages": "By village",
    "ov.village": "Village",
    "ov.alerts": "Open alerts",
    "ov.no_alerts": "No open alerts",
    "ov.changes": "Changes in the last hour",
    "ov.no_changes": "Nothing changed in the last hour",
    "ov.kind_summary": "{kind} working in {ok}/{n} villages",
    "ov.working": "By kind (working now)",
    "alert.acked": "acknowledged",
    "alert.ack": "Acknowledge",
    "alert.affected": "{n} devices behind it",
    "sev.critical": "Critical",
    "sev.warning": "Warning",
    "sev.info": "Info",
    "change.state": "{from} → {to}",
    "map.plan": "Plan drawn from device coordinates (works offline)",
    "map.no_coords": "{n} devices without coordinates are placed around their village",
    "map.legend": "Legend",
    "list.search": "Search name, id, village…",
    "list.all_kinds": "All kinds",
    "list.all_states": "All states",
    "list.all_villages": "All villages",
    "list.count": "{n} / {total} devices",
    "list.csv": "Download CSV",
    "col.state": "State",
    "col.name": "Device",
    "col.kind": "Kind",
    "col.village": "Village",
    "col.last_seen": "Last heard",
    "col.since": "Since",
    "col.reason": "Reason",
    "col.metrics": "Metrics",
    "dev.back": "← Device list",
    "dev.not_found": "No such device",
    "dev.history": "History",
    "dev.state_band": "Online share",
    "dev.events": "Events",
    "dev.no_events": "No events in this period",
    "dev.no_history": "No data in this period yet",
    "dev.metrics": "Latest metrics",
    "dev.links": "Streams / snapshots",
    "dev.parent": "Depends on",
    "dev.period": "Period",
    "period.6h": "6 hours",
    "period.24h": "24 hours",
    "period.7d": "7 days",
    "period.30d": "30 days",
    "ev.time": "Time",
    "ev.type": "Event",
    "ev.severity": "Severity",
    "ev.message": "Message",
    "rep.title": "Availability report",
    "rep.from": "From",
    "rep.to": "To",
    "rep.group": "Group by",
    "rep.by_village": "Village",
    "rep.by_kind": "Device kind",
    "rep.by_device": "Device",
    "rep.run": "Show report",
    "rep.csv": "Download CSV",
    "rep.availability": "Availability",
    "rep.devices": "Devices",
    "rep.online_now": "Online now",
    "rep.villages_ok": "Villages fully working",
    "rep.online_h": "Hours online",
    "rep.offline_h": "Hours offline",
    "rep.maint_h": "Hours in maintenance",
    "rep.error": "Could not get the report: {msg}",
    "rep.empty": "No data",
    "rep.now": "Now",
    "misc.never": "never",
    "misc.ago_s": "{n} s ago",
    "misc.ago_m": "{n} min ago",
    "misc.ago_h": "{n} h ago",
    "misc.ago_d": "{n} d ago",
    "misc.loading": "Loading…",
    "misc.error": "Error: {msg}",
    "misc.none": "—",
    "nav.alerts": "Alerts",
    "nav.maintenance": "Maintenance",
    "role.admin": "Administrator",
    "role.operator": "Operator",
    "role.technician": "Technician",
    "role.viewer": "Viewer",
    "misc.cancel": "Cancel",
    "misc.sending": "Sending…",
    "misc.more": "Show more",
    "misc.csv": "Download CSV",
    "ov.all_alerts": "All alerts →",
    "al.title": "Alerts",
    "al.tab.open": "Open",
    "al.tab.acked": "Acknowledged",
    "al.tab.resolved": "Resolved",
    "al.empty.open": "No open alerts",
    "al.empty.acked": "No acknowledged alerts waiting to be resolved",
    "al.empty.resolved": "No resolved alerts yet",
    "al.rule": "Rule",
    "al.device": "Device",
    "al.village": "Village",
    "al.severity": "Severity",
    "al.opened": "Opened",
    "al.acked": "Acknowledged",
    "al.acked_by": "Acknowledged by",
    "al.resolved": "Resolved",
    "al.resolved_by": "Resolved by",
    "al.resolved_auto": "cleared by itself when the device recovered",
    "al.assignee": "Assigned to",
    "al.unassigned": "not assigned",
    "al.comment": "Comment",
    "al.affected": "Devices affected behind it ({n})",
    "al.ioc_wide": "Whole IOC",
    "al.ack": "Acknowledge",
    "al.assign": "Assign",
    "al.resolve": "Resolve",
    "al.comment_ph": "Comment (optional)",
    "al.username": "Assign to (username)",
    "al.me": "me",
    "al.do_ack": "Acknowledge alert",
    "al.do_assign": "Assign",
    "al.do_resolve": "Mark resolved",
    "al.view_only": "Viewer accounts can only look at alerts.",
    "al.failed": "Could not do that: {msg}",
    "al.no_user": "there is no user “{name}” — pick someone from the list",
    "al.count": "{n} alerts",
    "rule.offline": "Offline",
    "rule.flapping": "Flapping connection",
    "rule.broker_lost": "IOC lost its MQTT broker",
    "rule.camera_tamper": "Camera covered / moved / damaged",
    "rule.camera_signal_loss": "Camera video signal lost",
    "rule.camera_storage_failure": "Camera storage failure",
    "rule.camera_clock_skew": "Camera clock off",
    "rule.camera_auth_failed": "Camera refuses our password",
    "rule.eboard_screen_off": "E-board screen off",
    "rule.speaker_battery_low": "Speaker battery low",
    "rule.uplink_down": "Internet uplink down",
    "rule.temperature_high": "Temperature high",
    "am.offline": "is offline",
    "am.flapping": "is flapping: offline {flaps} times in a row",
    "am.flapping.plain": "is flapping",
    "am.broker_lost": "the IOC lost its MQTT broker: device states are frozen",
    "am.camera_tamper": "is tampered with (covered, moved or damaged)",
    "am.camera_signal_loss": "lost its video signal",
    "am.camera_storage_failure": "has a storage failure",
    "am.camera_clock_skew": "clock is off by {value} s (threshold {threshold} s)",
    "am.camera_clock_skew.plain": "clock is off",
    "am.camera_auth_failed": "refuses our credentials",
    "am.eboard_screen_off": "screen is off during on-hours ({on_hours})",
    "am.eboard_screen_off.plain": "screen is off during on-hours",
    "am.speaker_battery_low": "is on battery at {value}% (threshold {threshold}%)",
    "am.speaker_battery_low.plain": "is on battery, running low",
    "am.uplink_down": "lost its Internet uplink",
    "am.temperature_high": "temperature is {value} °C (threshold {threshold} °C)",
    "am.temperature_high.plain": "temperature is high",
    "am.threshold": "{metric} = {value} (threshold {op} {threshold})",
    "mt.title": "Maintenance windows",
    "mt.new": "New maintenance window",
    "mt.scope": "Scope",
    "mt.scope_device": "One device",
    "mt.scope_area": "Village, device kind",
    "mt.commune": "Commune",
    "mt.device": "Device",
    "mt.village": "Village",
    "mt.all_villages": "Whole commune",
    "mt.kind": "Device kind",
    "mt.all_kinds": "All kinds",
    "mt.starts": "Starts",
    "mt.ends": "Ends",
    "mt.tz_hint": "Times in {tz}",
    "mt.reason": "Reason",
    "mt.reason_ph": "e.g. replacing the speaker's power supply",
    "mt.rrule": "Repeat (RRULE, optional)",
    "mt.rrule_ph": "e.g. FREQ=WEEKLY;BYDAY=TU",
    "mt.rrule_help": "Each occurrence lasts as long as the first, on the commune's clock.",
    "mt.create": "Create window",
    "mt.created": "Maintenance window #{id} created",
    "mt.deleted": "Maintenance window #{id} deleted",
    "mt.delete": "Delete",
    "mt.confirm_delete": "Delete this window? Its devices leave maintenance at once.",
    "mt.empty": "No maintenance windows",
    "mt.status": "Status",
    "mt.active": "In progress",
    "mt.upcoming": "Upcoming",
    "mt.ended": "Ended",
    "mt.repeating": "Recurring",
    "mt.repeat": "Repeats",
    "mt.once": "Once",
    "mt.created_by": "Created by",
    "mt.view_only": "Only administrators can create or delete maintenance windows.",
    "mt.refused": "The server refused this window:",
    "mt.server_said": "Server said: {msg}",
    "mt.err_end_before_start": "The end must be after the start.",
    "mt.err_rrule": "The repeat rule (RRULE) is not valid.",
    "mt.err_device": "No such device (or it was retired).",
    "mt.err_village": "No such village in this commune.",
    "mt.err_commune": "No such commune.",
    "mt.whole": "All of {name}",
    "freq.HOURLY": "hourly",
    "freq.DAILY": "daily",
    "freq.WEEKLY": "weekly",
    "freq.MONTHLY": "monthly",
    "freq.YEARLY": "yearly",
    "dev.no_data": "No data",
    "chart.min": "min",
    "chart.avg": "avg",
    "chart.max": "max",
    "dev.with_data": "{v}% (data for {k}% of the time)",
    "band.ok": "≥ 99.5 %",
    "band.good": "90–99.5 %",
    "band.poor": "50–90 %",
    "band.bad": "< 50 %",
    "metric.volume": "Volume",
    "metric.playing": "Playing",
    "metric.source": "Audio source",
    "metric.rssi_dbm": "Signal strength",
    "metric.power": "Power supply",
    "metric.battery_pct": "Battery",
    "metric.temperature_c": "Temperature",
    "metric.firmware": "Firmware",
    "metric.screen_on": "Screen on",
    "metric.brightness_pct": "Brightness",
    "metric.content_id": "Content shown",
    "metric.errors": "Errors",
    "metric.clients": "Connected clients",
    "metric.uptime_s": "Uptime",
    "metric.uplink_up": "Internet uplink",
    "metric.rx_bytes": "Received",
    "metric.tx_bytes": "Sent",
    "metric.channel": "Wi-Fi channel",
    "metric.cpu_pct": "CPU load",
    "metric.mem_pct": "Memory used",
    "metric.rtt_ms": "Round-trip time",
    "metric.clock_offset_s": "Clock offset",
    "metric.reachable": "Reachable",
    "metric.recording": "Recording",
    "metric.tamper": "Tampered",
    "metric.motion": "Motion",
    "metric.manufacturer": "Manufacturer",
    "metric.model": "Model",
    "metric.auth_failed": "Auth failed",
    "metric.camera_ts": "Camera's clock",
    "power.mains": "mains",
    "power.battery": "battery",
    "power.solar": "solar",
    "dur.d": "{d} d {h} h",
    "dur.h": "{h} h {m} min",
    "dur.m": "{m} min",
  },
};

export const STATES = ["online", "offline", "unknown", "maintenance", "auth_failed"];
export const KINDS = ["camera", "speaker", "eboard", "wifi", "gateway"];
// Units of the status fields of SPEC §4 (the same in both languages).
export const METRIC_UNITS = {
  volume: "%", battery_pct: "%", brightness_pct: "%", cpu_pct: "%", mem_pct: "%", temperature_c: "°C",
  rssi_dbm: "dBm", rtt_ms: "ms", clock_offset_s: "s", uptime_s: "s", rx_bytes: "B", tx_bytes: "B",
};

let lang = "vi";
let tz = "Asia/Ho_Chi_Minh";
const listeners = new Set();
let fmtCache = {};

export function init(config) {
  tz = config.tz || tz;
  const saved = localStorage.getItem("ioc.lang");
  lang = DICT[saved] ? saved : DICT[config.lang] ? config.lang : "vi";
  document.documentElement.lang = lang;
}

export function getLang() {
  return lang;
}

export function getTz() {
  return tz;
}

export function setLang(next) {
  if (!DICT[next] || next === lang) return;
  lang = next;
  fmtCache = {};
  localStorage.setItem("ioc.lang", next);
  document.documentElement.lang = next;
  applyI18n(document);
  for (const fn of listeners) fn(next);
}

export function onLang(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function t(key, vars) {
  let s = DICT[lang][key] ?? DICT.vi[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, v);
  return s;
}

// A status field's name for people, e.g. "Cường độ sóng (dBm)"; an unknown field keeps its key.
export function metricLabel(key, withUnit = false) {
  const name = DICT[lang][`metric.${key}`] ?? DICT.vi[`metric.${key}`] ?? key;
  return withUnit && METRIC_UNITS[key] && name !== key ? `${name} (${METRIC_UNITS[key]})` : name;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

function formatter(kind) {
  if (!fmtCache[kind]) {
    const locale = lang === "vi" ? "vi-VN" : "en-GB";
    const opts = {
      full: { dateStyle: "short", timeStyle: "medium" },
      time: { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      short: { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false },
      minute: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false },
      long: { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false },
      date: { year: "numeric", month: "2-digit", day: "2-digit" },
      day: { day: "2-digit", month: "2-digit" },
      hm: { hour: "2-digit", minute: "2-digit", hour12: false },
    }[kind];
    fmtCache[kind] = new Intl.DateTimeFormat(locale, { ...opts, timeZone: tz });
  }
  return fmtCache[kind];
}

export function fmtTime(iso, kind = "full") {
  if (!iso) return t("misc.never");
  const d = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : formatter(kind).format(d);
}

export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return t("misc.never");
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return t("misc.ago_s", { n: s });
  if (s < 3600) return t("misc.ago_m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("misc.ago_h", { n: Math.floor(s / 3600) });
  return t("misc.ago_d", { n: Math.floor(s / 86400) });
}

// The built-in rules the page has words for ("am.<rule>"), with the details their words need; without
// them a rule reads "am.<rule>.plain". Decimals as the server's messages show the values.
const ALERT_WORDS = {
  offline: [], flapping: ["flaps"], broker_lost: [], camera_tamper: [], camera_signal_loss: [],
  camera_storage_failure: [], camera_auth_failed: [], uplink_down: [], eboard_screen_off: ["on_hours"],
  camera_clock_skew: ["value", "threshold"], speaker_battery_low: ["value", "threshold"],
  temperature_high: ["value", "threshold"],
};
const ALERT_DECIMALS = { camera_clock_skew: 0, speaker_battery_low: 0, temperature_high: 1 };

function fmtNumber(v, decimals) {
  const opts = decimals === undefined
    ? { maximumFractionDigits: 2 }
    : { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
  return new Intl.NumberFormat(lang === "vi" ? "vi-VN" : "en-GB", opts).format(v);
}

function alertWhat(rule, d) {
  const words = Object.hasOwn(ALERT_WORDS, rule) ? ALERT_WORDS[rule] : null;
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  if (words) {
    const vars = {};
    for (const k of words) {
      const v = d[k];
      if (k === "on_hours" ? typeof v !== "string" || !v : !isNum(v)) return t(`am.${rule}.plain`);
      vars[k] = k === "value" ? fmtNumber(v, ALERT_DECIMALS[rule]) : isNum(v) ? fmtNumber(v) : v;
    }
    return t(`am.${rule}`, vars);
  }
  if (typeof d.metric === "string" && typeof d.op === "string" && d.value != null) {
    // A threshold rule of the alerts file: metric, comparison and limit.
    const show = (v) => (isNum(v) ? fmtNumber(v) : String(v));
    return t("am.threshold", { metric: metricLabel(d.metric), op: d.op, value: show(d.value), threshold: show(d.threshold) });
  }
  return null;
}

// An alert's one line in the page's language, e.g. "Router ấp Trung Bình mất kết nối", from its rule,
// device and `details` (the server's `message` is in IOC_LANG, for notifications). `deviceName`: the
// device's name when the page knows it. Rules the page has no words for keep the server's text.
export function alertText(a, deviceName = null) {
  const d = a.details || {};
  const what = alertWhat(a.rule === "offline" && d.flapping ? "flapping" : a.rule, d);
  if (what === null) return a.message || "";
  if (!a.device_id) return what.charAt(0).toUpperCase() + what.slice(1);
  const name = deviceName || `${DICT[lang][`kind.${a.kind}`] || ""} ${a.device_id}`.trim();
  return `${name} ${what}`;
}

// The calendar date (YYYY-MM-DD) of an instant in the deployment's time zone.
export function localDate(d) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(d);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

function zoneParts(d) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: tz, hour12: false, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(d);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return { y: get("year"), mo: get("month"), d: get("day"), h: get("hour") % 24, mi: get("minute"), s: get("second") };
}

// The instant a wall-clock time "YYYY-MM-DDTHH:MM[:SS]" names in the deployment's time zone,
// whatever zone the browser itself is in.
export function fromLocalInput(text) {
  const guess = new Date(`${text.length === 16 ? `${text}:00` : text}Z`);
  if (Number.isNaN(guess.getTime())) return null;
  const p = zoneParts(guess);
  const asLocal = Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s);
  return new Date(guess.getTime() - (asLocal - guess.getTime()));
}

// The value for an <input type="datetime-local"> showing an instant on the deployment's clock.
export function toLocalInput(d) {
  const p = zoneParts(d);
  const two = (n) => String(n).padStart(2, "0");
  return `${p.y}-${two(p.mo)}-${two(p.d)}T${two(p.h)}:${two(p.mi)}`;
}

// The instant a local calendar date starts at in the deployment's time zone.
export function startOfLocalDate(ymd) {
  return fromLocalInput(`${ymd}T00:00`);
}
