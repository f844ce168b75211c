"""Every word of the Vietnamese page comes from the catalogue (dashboard/words.json).

The test walks every view in Chromium against a real gateway and fails when a visible text (text
nodes, placeholders, tooltips, aria-labels, the tab title) is not made of catalogue words. What is not a word and so is taken out first, by this rule:
- data: ids and names from the registry (communes, districts, provinces, villages, devices), user
  names, what people typed (maintenance reasons, broadcast titles and texts, comments), what devices
  sent (event messages, status field names and text values, stream and snapshot addresses), the
  time zone setting, the criteria file's indicator names and sources (docs/criteria.md);
- numbers, dates, times and the SI units of status fields (%, °C, dBm, ms, s, B);
- the map library's attribution (Leaflet, © OpenStreetMap), which its licence asks to be shown as is;
- text marked as English (`lang="en"`), such as the English line under the page for an unknown address.
What is left must be catalogue values (with their {fields} filled by words, data or numbers), and
punctuation. The main views are walked once more in English, against the English words.
"""

import re
from collections.abc import Iterator

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from services import auth, village_terms, words
from services.criteria import catalogue as criteria_catalogue
from tests.dashboard.conftest import PASSWORD, sign_in
from tests.dashboard.pipeline import open_alert

pytestmark = pytest.mark.browser

DATA, WORD = "\x00", "\x01"
UNITS = ("°C", "dBm", "ms", "%", "s", "B")
# Separators between words: spaces and punctuation, never letters.
SEP = r"[\s\x00\x01.,:;!?()\[\]{}<>«»\"'“”‘’/\\|·•…–—−\-+=×≥≤#*&@~^_%°↑↓←→▲▼✓✗⟳]"
_FIELD = re.compile(r"\{(\w+)\}")
_NUMBERISH = re.compile(r"(?<![^\W\d_])[+-]?\d[\d.,:/]*(?![^\W\d_])")
_UNIT = re.compile(r"(?<![^\W\d_])(?:" + "|".join(re.escape(u) for u in UNITS) + r")(?![^\W\d_])")

# Texts every page shows: read with JavaScript, so that only what a person sees counts.
VISIBLE_TEXTS = """() => {
  const out = [document.title];
  const seen = (el) => el && el.checkVisibility({ visibilityProperty: true });
  const skip = (el) => el.closest("script, style, template, .leaflet-control-attribution, body [lang=en]");
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const node = walk.currentNode;
    const el = node.parentElement;
    if (!el || skip(el)) continue;
    const inSelect = el.closest("select");
    if (!(inSelect ? seen(inSelect) : seen(el))) continue;
    out.push(node.nodeValue);
  }
  for (const el of document.querySelectorAll("[placeholder]")) if (seen(el)) out.push(el.placeholder);
  // Tooltips and the names screen readers say are read too.
  for (const el of document.querySelectorAll("[title], [aria-label]")) {
    if (!seen(el) || skip(el)) continue;
    out.push(el.getAttribute("title") || "", el.getAttribute("aria-label") || "");
  }
  return out.map((s) => s.replace(/\\s+/g, " ").trim()).filter(Boolean);
}"""


class Catalogue:
    """Tells whether a text is made of the catalogue's Vietnamese words, data and numbers."""

    def __init__(
        self, data: set[str], village_words: set[str], lang: str = "vi", whole: frozenset[str] = frozenset()
    ) -> None:
        terms = sorted(village_words | {"xóm / ấp"}, key=len, reverse=True) if lang == "vi" else ["village"]
        values = {
            v for value in words.catalogue()[lang].values() for v in self._with_village_words(value, terms)
        }
        self.data = sorted((d for d in data if len(d) > 1), key=len, reverse=True)
        # Longest fixed text first, so that a phrase is taken whole before the words inside it.
        fixed = lambda v: len(_FIELD.sub("", v))  # noqa: E731
        self.values = [self._pattern(v) for v in sorted(values, key=fixed, reverse=True) if fixed(v)]
        self.whole = whole  # data only where it is all of a text or of a {field} (field names: "power")
        self._seen: dict[str, str] = {}

    @staticmethod
    def _with_village_words(value: str, terms: list[str]) -> list[str]:
        if "{vt}" not in value and "{Vt}" not in value:
            return [value]
        return [value.replace("{vt}", t).replace("{Vt}", t[:1].upper() + t[1:]) for t in terms]

    @staticmethod
    def _pattern(value: str) -> re.Pattern[str]:
        # A {field} is any text, checked again on its own; the last one, at the end, takes the rest.
        parts = _FIELD.split(value)
        out = []
        for i, p in enumerate(parts):
            if i % 2 == 0:
                out.append(re.escape(p))
            else:
                out.append("(.+)" if i == len(parts) - 2 and parts[-1] == "" else "(.+?)")
        return re.compile("".join(out), re.DOTALL)

    def leftover(self, text: str) -> str:
        """What of `text` is neither a catalogue word, data, a number nor punctuation ("" if none)."""
        if text in self.whole:
            return ""
        if text not in self._seen:
            self._seen[text] = ""  # a field that holds its whole phrase again proves nothing
            s = text
            for d in self.data:
                s = s.replace(d, DATA)
            for p in self.values:
                s = p.sub(self._word, s)
            s = _UNIT.sub(DATA, _NUMBERISH.sub(DATA, s))
            self._seen[text] = re.sub(SEP, "", s)
        return self._seen[text]

    def _word(self, m: re.Match[str]) -> str:
        fields = [g for g in m.groups() if g != m.group(0)]
        return WORD if all(not self.leftover(g) for g in fields) else m.group(0)


def registry_data(db_url: str) -> tuple[set[str], set[str], frozenset[str]]:
    """(every text that is data, the communes' words for their villages, data only as a whole text)."""
    out: set[str] = {"Asia/Ho_Chi_Minh", "Leaflet", "OpenStreetMap"}
    fields: set[str] = set()
    queries = (
        "SELECT id, name, district, province, village_term FROM communes",
        "SELECT id, name, former_commune, NULL, NULL FROM villages",
        "SELECT id, name, NULL, NULL, NULL FROM devices",
        "SELECT username, NULL, NULL, NULL, NULL FROM users",
        "SELECT reason, NULL, NULL, NULL, NULL FROM maintenance",
        "SELECT title, text, NULL, NULL, NULL FROM broadcasts",
        "SELECT message, ack_comment, assignee, acked_by, resolved_by FROM alerts",
        "SELECT message, NULL, NULL, NULL, NULL FROM device_events",
    )
    with psycopg.connect(db_url) as conn:
        for q in queries:
            for row in conn.execute(q):  # type: ignore[call-overload]
                out.update(str(v) for v in row if v)
        # Text status fields are what the device said ("tb-2026-11", rtsp://…).
        for (metrics,) in conn.execute("SELECT metrics FROM device_state"):
            out.update(v for v in (metrics or {}).values() if isinstance(v, str))
            fields.update(metrics or {})  # the fields' own names, as a technician reads them in a tooltip
        terms = {t for t in village_terms.commune_terms(conn).values() if t}
    # The criteria file (the shipped one here) names its indicators and the decisions they come from.
    crit = criteria_catalogue.effective(None)
    out.update(x for i in crit.indicators for x in (*i.name.values(), i.source))
    out.update([crit.name] if crit.name else [])
    return out, terms, frozenset(fields)


@pytest.fixture(scope="module")
def walk_db(dash_db: str) -> str:
    """The dashboard's seeded database, with reasons as ingest writes them and an open alert."""
    with psycopg.connect(dash_db) as conn:
        conn.execute("UPDATE device_state SET reason = 'status received' WHERE state = 'online'")
        conn.execute("UPDATE device_state SET reason = 'no status for 90 s' WHERE state = 'offline'")
        conn.execute(
            "UPDATE device_state SET reason = 'camera refuses our credentials' WHERE state = 'auth_failed'"
        )
        conn.execute("UPDATE device_state SET reason = 'never heard' WHERE state = 'unknown'")
        conn.execute("UPDATE state_changes SET reason = 'status received' WHERE reason = 'seeded'")
        auth.add_user(conn, "khoa", PASSWORD, "viewer")
        conn.execute("UPDATE users SET locked_until = now() + interval '10 minutes' WHERE username = 'khoa'")
    open_alert(dash_db, "offline", "spk-tay-binh-1", message="Loa ấp Tây Bình 1 mất kết nối")
    return dash_db


@pytest.fixture
def admin(browser: Browser, dash_url: str, walk_db: str) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    # A key the page asks for and the catalogue lacks is said in the console (dashboard/js/i18n.js).
    missing: list[str] = []
    page.on("console", lambda m: missing.append(m.text) if "has no word" in m.text else None)
    sign_in(page, dash_url)
    yield page
    ctx.close()
    assert missing == []


def not_words(page: Page, catalogue: Catalogue) -> dict[str, str]:
    """The visible texts that are not made of catalogue words, with what is left of each."""
    out = {}
    for text in page.evaluate(VISIBLE_TEXTS):
        left = catalogue.leftover(text)
        if left:
            out[text] = left
    return out


def test_the_rule_finds_english_and_developer_text() -> None:
    cat = Catalogue({"Loa ấp Tây Bình 1", "spk-tay-binh-1"}, {"ấp"})
    assert cat.leftover("Loa ấp Tây Bình 1 mất kết nối") == ""
    assert (
        cat.leftover(
            "Lỗi: Có lỗi xảy ra, chưa làm được việc này. Vui lòng thử lại; nếu vẫn lỗi, hãy báo cho quản trị viên."
        )
        == ""
    )
    assert cat.leftover("Theo ấp") == ""
    assert cat.leftover("12,5 °C · 04:42:07 02/12/2026") == ""
    assert cat.leftover("Lỗi: no device spk-tay-binh-1") == "nodevice"
    assert cat.leftover("ends_at must be after starts_at") != ""
    assert cat.leftover("status received") != ""
    assert cat.leftover("Commune IOC") != ""


def test_every_view_of_the_vietnamese_page_speaks_the_catalogue(
    browser: Browser, dash_url: str, walk_db: str, admin: Page
) -> None:
    found: dict[str, dict[str, str]] = {}

    def look(where: str, page: Page) -> None:
        page.wait_for_load_state("networkidle")
        data, terms, fields = registry_data(walk_db)
        missing = not_words(page, Catalogue(data, terms, whole=fields))
        if missing:
            found[where] = missing

    # Signing in: a wrong password, then a locked account.
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    login = ctx.new_page()
    login.goto(dash_url + "/")
    login.fill("input[name=username]", "admin")
    login.fill("input[name=password]", "wrong-password")
    login.click("#login button[type=submit]")
    expect(login.locator("#login-error")).to_be_visible()
    look("login, wrong password", login)
    login.fill("input[name=username]", "khoa")
    login.fill("input[name=password]", PASSWORD)
    login.click("#login button[type=submit]")
    expect(login.locator("#login-error")).to_contain_text("tạm khóa")
    look("login, locked account", login)
    ctx.close()

    # A wrong address followed in a browser.
    page = admin
    page.goto(dash_url + "/thiet-bi/khong-co")
    look("unknown address", page)
    page.goto(dash_url + "/")
    page.wait_for_selector("#app:not([hidden])")
    base = page.url.split("#")[0]
    views = {
        "overview": ("#/", "#village-table"),
        "map": ("#/map", "#map-legend"),
        "device list": ("#/devices", "#device-list"),
        "device page (speaker)": ("#/device/spk-trung-binh-1", "#device-metrics"),
        "device page (camera)": ("#/device/cam-ubnd-1", "#device-links"),
        "device page (refused camera)": ("#/device/cam-cho", "#device-metrics"),
        "device page (router)": ("#/device/gw-trung-binh", "#device-metrics"),
        "device page (Wi-Fi point)": ("#/device/wifi-cho", "#device-metrics"),
        "device page (e-board)": ("#/device/eb-ubnd", "#device-metrics"),
        "alerts": ("#/alerts", "#alert-list article"),
        "maintenance": ("#/maintenance", "#mt-form"),
        "report": ("#/report", "#report-table[data-rows]"),
        "broadcasts": ("#/broadcasts", "#bc-new"),
        "new broadcast": ("#/broadcasts/new", "#bc-form"),
        "emergency broadcast": ("#/broadcasts/emergency", "#bc-form"),
        "upstreams (admin)": ("#/upstreams", "#up-count"),
    }
    for where, (route, ready) in views.items():
        page.goto(base + route)
        page.wait_for_selector(ready)
        look(where, page)

    # A broadcast's own page, an alert's acknowledge form, the device list filtered to nothing.
    made = page.evaluate(
        """() => fetch("/api/v1/broadcasts", {method: "POST", headers: {"Content-Type": "application/json"},
             body: JSON.stringify({title: "Thông báo thu gom rác", text: "Sáng thứ Bảy, 7 giờ",
             targets: {villages: ["bac-thanh"]}})}).then((r) => r.json())"""
    )
    page.goto(base + f"#/broadcasts/{made['id']}")
    page.wait_for_selector(f"text={made['title']}")
    look("a broadcast's page", page)
    page.goto(base + "#/alerts")
    page.locator("#alert-list article [data-action=ack]").first.click()
    page.wait_for_selector("#alert-list article form")
    look("alerts, acknowledge form", page)
    # Resolved meanwhile (its live-feed message not here yet): the server refuses the acknowledgement
    # (409) and the card says so in a sentence, not in the server's words.
    card = page.locator("#alert-list article:has(form)").first
    with psycopg.connect(walk_db) as conn:
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now() WHERE id = %s",
            (int(card.get_attribute("data-alert-id") or 0),),
        )
    card.locator("form button[type=submit]").click()
    expect(card.locator("form .error")).to_contain_text(words.text("error.conflict"))
    look("alerts, a refused acknowledgement", page)
    page.goto(base + "#/devices")
    page.fill("input[name=q][type=search]", "khong co thiet bi nay")
    look("device list, nothing found", page)
    page.goto(base + "#/alerts")
    page.fill("#alert-search", "khong co canh bao nay")
    page.wait_for_selector("#alert-list .empty")
    look("alerts, nothing found", page)

    # An error path: the maintenance form refused by the server.
    page.goto(base + "#/maintenance")
    form = page.locator("#mt-form")
    form.locator("input[name=device_q]").fill("loa trung binh 2")
    form.locator("input[name=starts_at]").fill("01/02/2030 10:00")
    form.locator("input[name=ends_at]").fill("01/02/2030 09:00")
    form.locator("button[type=submit]").click()
    expect(page.locator("#mt-error")).to_be_visible()
    look("maintenance, refused", page)

    # The same views after the server stopped answering one of their calls are not walked here:
    # tests/dashboard/test_dashboard.py covers the lost connection banner.
    assert found == {}, "\n".join(
        f"{where}:\n" + "\n".join(f"  {text!r} -> {left!r}" for text, left in texts.items())
        for where, texts in found.items()
    )


ENGLISH_VIEWS = {
    "overview": ("#/", "#village-table"),
    "device list": ("#/devices", "#device-list"),
    "device page (camera)": ("#/device/cam-ubnd-1", "#device-links"),
    "alerts": ("#/alerts", "#alert-list"),
    "maintenance": ("#/maintenance", "#mt-form"),
    "report": ("#/report", "#report-table[data-rows]"),
    "broadcasts": ("#/broadcasts", "#bc-new"),
}


def test_the_english_page_speaks_the_english_catalogue(admin: Page, walk_db: str) -> None:
    # The same rule in English (lang=en): no Vietnamese word left untranslated, no key shown.
    page = admin
    page.click("#lang-switch")
    expect(page.locator("[data-nav=overview]")).to_have_text(words.text("nav.overview", "en"))
    base = page.url.split("#")[0]
    found: dict[str, dict[str, str]] = {}
    for where, (route, ready) in ENGLISH_VIEWS.items():
        page.goto(base + route)
        page.wait_for_selector(ready)
        page.wait_for_load_state("networkidle")
        data, _, fields = registry_data(walk_db)
        missing = not_words(page, Catalogue(data, set(), "en", fields))
        if missing:
            found[where] = missing
    page.evaluate("localStorage.removeItem('ioc.lang')")
    assert found == {}, "\n".join(
        f"{where}:\n" + "\n".join(f"  {text!r} -> {left!r}" for text, left in texts.items())
        for where, texts in found.items()
    )
