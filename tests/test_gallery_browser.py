"""The gallery page in a real browser: Playwright driving Debian's Chromium (Playwright's own
browser download cannot work offline) against a real `imgvec serve` over a loaded database
(tests/service_fixtures.py: 5 colour classes of 10 images and one hostile name).

Every test fails if the page opens a JavaScript dialog (alert/confirm/prompt: what an injected
`onerror=alert(1)` would do) or throws an uncaught error."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests import service_fixtures
from tests.service_fixtures import CLASSES, HOSTILE_NAME, PER_CLASS, ServiceProcess

# The session's loaded gallery and its server, shared with the API tests.
gallery = service_fixtures.gallery
gallery_server = service_fixtures.gallery_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "gallery.png"
LAPTOP = {"width": 1280, "height": 800}
# The thumbnails are lazy: a window where the first 48 are all on (or near) the screen.
DESKTOP = {"width": 1920, "height": 1200}
PHONE = {"width": 390, "height": 844}
IMAGES = len(CLASSES) * PER_CLASS + 1  # and the hostile name
# The bench's goal is 1 s (issue 16); a shared test machine gets a generous bound.
FIRST_THUMBNAILS = 48
FIRST_THUMBNAILS_BOUND_MS = 5000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: the browser tests need Debian's chromium (as root: apt-get install "
    "chromium, or `make chromium`)",
)

# Loaded thumbnails among the result cards: decoded, not a broken-image placeholder.
LOADED_THUMBNAILS = """
  () => [...document.querySelectorAll('#results .card img')]
          .filter((img) => img.complete && img.naturalWidth > 0).length
"""


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Gallery:
    """A page of the gallery in a fresh browser context, and what it did that it must not."""

    def __init__(self, browser, base_url: str, viewport: dict) -> None:
        self.base_url = base_url
        self.context = browser.new_context(viewport=viewport, base_url=base_url)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def open(self, query: str = "") -> None:
        self.page.goto(f"/{query}")
        self.wait_idle()  # the spaces are in, and the link's query (if any) answered
        assert not self.page.locator("#status.error").count(), self.status()
        assert self.page.locator("#space option").count() > 0

    def search(self, text: str, k: int) -> None:
        self.page.fill("#k", str(k))
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")
        self.wait_for_results(k)

    def wait_for_results(self, count: int, *, loaded: bool = True) -> None:
        page = self.page
        page.wait_for_function(
            "n => !document.body.classList.contains('busy')"
            " && document.querySelectorAll('#results .card').length === n",
            arg=count,
        )
        if loaded:
            page.wait_for_function(f"n => ({LOADED_THUMBNAILS})() === n", arg=count)

    def wait_idle(self) -> None:
        self.page.wait_for_function("() => !document.body.classList.contains('busy')")

    def object_ids(self) -> list[int]:
        return [
            int(i)
            for i in self.page.eval_on_selector_all(
                "#results .card", "cards => cards.map((card) => card.dataset.objectId)"
            )
        ]

    def names(self) -> list[str]:
        return self.page.locator("#results .card-name").all_text_contents()

    def status(self) -> str:
        return self.page.locator("#status").text_content() or ""

    def close(self) -> None:
        self.context.close()
        assert not self.dialogs, f"the page opened dialogs: {self.dialogs}"
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


@pytest.fixture(scope="module")
def server(gallery_server) -> ServiceProcess:
    """The session's server with its model loaded: the first text search loads it (seconds to
    tens of seconds on a busy machine), which is no part of what these tests time or wait for."""
    warm_up = httpx.get(
        f"{gallery_server.url}/api/search", params={"text": "warm up", "k": 1}, timeout=600
    )
    assert warm_up.status_code == 200, warm_up.text
    return gallery_server


@pytest.fixture
def laptop(browser, server):
    gallery = Gallery(browser, server.url, LAPTOP)
    yield gallery
    gallery.close()


def test_a_text_search_shows_k_thumbnails_that_loaded(laptop):
    laptop.open()
    laptop.search("a red circle", k=8)
    assert len(laptop.object_ids()) == 8
    assert laptop.page.evaluate(LOADED_THUMBNAILS) == 8
    assert "text=a+red+circle" in laptop.page.url and "k=8" in laptop.page.url
    scores = [float(s) for s in laptop.page.locator("#results .score").all_text_contents()]
    assert scores == sorted(scores, reverse=True)
    # Lazy, and sized before they load (no layout shift).
    img = laptop.page.locator("#results .card img").first
    assert img.get_attribute("loading") == "lazy"
    assert (img.get_attribute("width"), img.get_attribute("height")) == ("256", "256")


def test_opening_a_result_shows_its_similar_images_without_it(laptop, server):
    page = laptop.page
    laptop.open()
    laptop.search("a blue square", k=10)
    clicked = laptop.object_ids()[3]
    clicked_name = laptop.names()[3]
    page.locator("#results .card-open").nth(3).click()
    page.wait_for_url(f"**similar={clicked}**")
    laptop.wait_for_results(10)
    assert clicked not in laptop.object_ids()
    assert page.locator("#context .context-title .name").text_content() == clicked_name
    original = page.locator("#context a.original-link").get_attribute("href")
    assert original == f"/api/images/{clicked}/original"
    fetched = httpx.get(server.url + original)
    assert fetched.status_code == 200 and fetched.headers["content-type"].startswith("image/")

    # From the keyboard: focus a result, Enter opens it; Space on the next one too.
    opened = []
    for key in ("Enter", " "):
        target = laptop.object_ids()[0]
        opened.append(target)
        page.locator("#results .card-open").first.focus()
        page.keyboard.press(key)
        page.wait_for_url(f"**similar={target}**")
        laptop.wait_for_results(10)
        assert target not in laptop.object_ids()
    # The heading of the new query has the focus: the keyboard user is at the top.
    assert page.evaluate("document.activeElement.classList.contains('context-title')")

    # Back: the previous query again.
    page.go_back()
    page.wait_for_url(f"**similar={opened[0]}**")
    laptop.wait_for_results(10)
    assert opened[0] not in laptop.object_ids()


def test_an_uploaded_or_dropped_image_finds_results(laptop, gallery):
    page = laptop.page
    laptop.open("?k=6")
    upload = gallery.images / "green" / "03.png"
    page.set_input_files("#file", str(upload))
    laptop.wait_for_results(6)
    assert page.locator("#context .context-title .name").text_content() == "03.png"

    dropped = (gallery.images / "yellow" / "04.png").read_bytes()
    transfer = page.evaluate_handle(
        """bytes => {
             const transfer = new DataTransfer();
             transfer.items.add(new File([new Uint8Array(bytes)], 'dropped.png',
                                         { type: 'image/png' }));
             return transfer;
           }""",
        list(dropped),
    )
    page.dispatch_event("body", "drop", {"dataTransfer": transfer})
    page.wait_for_function(
        "() => document.querySelector('#context .name')?.textContent === 'dropped.png'"
    )
    laptop.wait_for_results(6)


def test_a_diverse_sample_is_one_image_per_cluster(laptop):
    laptop.open("?k=5")
    laptop.page.click("#diverse")
    laptop.wait_for_results(5)
    clusters = laptop.page.eval_on_selector_all(
        "#results .card", "cards => cards.map((card) => card.dataset.cluster)"
    )
    assert len(set(clusters)) == 5 and None not in clusters
    assert "diverse=1" in laptop.page.url
    assert "cluster" in laptop.page.locator("#results .cluster").first.text_content()


def test_a_hostile_name_is_text_and_runs_nothing(laptop):
    page = laptop.page
    laptop.open()
    page.fill("#prefix", "<img")
    page.fill("#text", "anything")
    page.press("#text", "Enter")
    laptop.wait_for_results(1)  # the one image whose name starts so
    assert laptop.names() == [HOSTILE_NAME]
    # Shown as text; no element was made from it (an <img src=x> would be in the document).
    assert page.locator('img[src="x"]').count() == 0
    page.locator("#results .card-open").first.click()
    page.wait_for_function(
        "name => document.querySelector('#context .name')?.textContent === name",
        arg=HOSTILE_NAME,
    )
    laptop.wait_idle()
    assert page.locator('img[src="x"]').count() == 0
    page.wait_for_timeout(300)  # time for an injected handler to have fired: close() checks


def test_reloading_the_url_gives_the_same_results(laptop):
    page = laptop.page
    laptop.open()
    page.select_option("select[data-attribute='class']", label="purple")
    laptop.search("a triangle", k=7)
    first = laptop.object_ids()
    assert first and "where=class" in page.url
    url = page.url
    page.reload()
    laptop.wait_for_results(len(first))
    assert laptop.object_ids() == first
    assert page.input_value("#text") == "a triangle"
    assert page.input_value("select[data-attribute='class']") == "class='purple'"
    assert page.url == url

    # The same link in another browser context: shared, it shows the same.
    other = Gallery(page.context.browser, laptop.base_url, LAPTOP)
    try:
        other.page.goto(url)
        other.wait_for_results(len(first))
        assert other.object_ids() == first
    finally:
        other.close()


def test_a_filter_from_the_link_is_shown_and_can_be_removed(laptop):
    page = laptop.page
    laptop.open("?diverse=1&k=4&where=class!%3Dred")  # no picker writes !=: shown as a chip
    laptop.wait_for_results(4)
    assert page.locator("#extra-filters .chip").text_content().startswith("class!=red")
    assert "red" not in page.locator("#results .tag").all_text_contents()
    page.click("#extra-filters .chip-remove")
    page.wait_for_function("() => !location.search.includes('where')")
    laptop.wait_for_results(4)
    assert page.locator("#extra-filters .chip").count() == 0


def test_no_results_and_errors_are_said_clearly(laptop):
    page = laptop.page
    laptop.open("?text=a+red+circle&k=5&min_score=0.99")
    laptop.wait_for_results(0, loaded=False)
    assert laptop.status().strip(), "an empty answer says why"
    assert page.locator("#status.error").count() == 0

    page.goto("/?text=a+red+circle&k=5&where=class~red")
    laptop.wait_idle()
    assert page.locator("#status.error").count() == 1
    message = laptop.status()
    assert "class~red" in message and "Traceback" not in message

    page.goto("/?similar=987654321&k=5")
    laptop.wait_idle()
    assert page.locator("#status.error").count() == 1


def test_the_first_thumbnails_load_fast_from_a_cold_browser(browser, server):
    count = min(FIRST_THUMBNAILS, IMAGES)
    cold = Gallery(browser, server.url, DESKTOP)
    try:
        started = time.perf_counter()
        cold.page.goto(f"/?text=a+yellow+circle&k={count}")
        handle = cold.page.wait_for_function(
            f"n => ({LOADED_THUMBNAILS})() === n && performance.now()", arg=count, polling="raf"
        )
        in_page_ms = handle.json_value()
        wall_ms = (time.perf_counter() - started) * 1000
        rendered_ms = cold.page.evaluate(
            "Math.min(...performance.getEntriesByType('resource')"
            ".filter((entry) => entry.name.includes('/thumbnail')).map((entry) => entry.startTime))"
        )
    finally:
        cold.close()
    print(
        f"\nfirst {count} thumbnails loaded {in_page_ms:.0f} ms after navigation start "
        f"(the first thumbnail asked for at {rendered_ms:.0f} ms: the search before it); "
        f"{wall_ms:.0f} ms wall clock from goto()"
    )
    assert in_page_ms <= FIRST_THUMBNAILS_BOUND_MS


def test_readable_on_a_phone(browser, server):
    phone = Gallery(browser, server.url, PHONE)
    try:
        phone.open("?text=a+green+circle&k=6")
        phone.wait_for_results(6)
        overflow = phone.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, "the page scrolls sideways on a phone"
        assert phone.page.locator("#diverse").is_visible()
        assert not phone.page.locator("#prefix").is_visible()  # folded under Options
        phone.page.click("#filters-toggle")
        assert phone.page.locator("#prefix").is_visible()
    finally:
        phone.close()


def test_a_long_space_name_and_its_image_count_fit_their_select(laptop):
    laptop.open()
    room = laptop.page.evaluate(
        """() => {
             const shown = document.querySelector('#space');
             const unbounded = shown.cloneNode(true);  // as wide as its selected text needs
             unbounded.style.maxWidth = 'none';
             shown.after(unbounded);
             const needed = unbounded.offsetWidth;
             unbounded.remove();
             return { text: shown.selectedOptions[0].text, width: shown.offsetWidth, needed };
           }"""
    )
    assert room["text"].endswith(f"({IMAGES} images)")
    assert room["width"] >= room["needed"], f"{room['text']!r} is cut: {room}"


def test_an_image_in_the_link_by_name_searches_or_says_what_is_wrong(laptop):
    page = laptop.page
    laptop.open("?image=red/01.png&k=5")
    laptop.wait_for_results(5)
    assert page.locator("#context .context-title .name").text_content() == "red/01.png"
    assert "image=red%2F01.png" in page.url

    for typo in ("?image=red/01.pgn&k=5", "?similar=red/01.pgn&k=5"):
        page.goto(f"/{typo}")
        laptop.wait_idle()
        alert = page.locator("#status.error[role=alert]")
        assert alert.count() == 1, f"{typo}: {laptop.status()!r}"
        assert "did you mean" in alert.text_content() and "'red/01.png'" in alert.text_content()
        assert page.locator("#welcome").is_hidden()


def test_a_token_is_asked_for_once_and_kept(browser, gallery):
    server = ServiceProcess(gallery, "--token", "s3cret-token")
    tokened = Gallery(browser, server.url, LAPTOP)
    try:
        page = tokened.page
        # A diverse sample: no text, so no model to load in this new server.
        page.goto("/?diverse=1&k=4")
        # Cancelled once: the page's other first requests (the link's sample, the health line)
        # do not ask again, and the page says why it is empty...
        page.wait_for_selector("#token-dialog[open]")
        page.click("#token-cancel")
        page.wait_for_function(
            "() => document.querySelector('#status.error')?.textContent.includes('access token')"
            " && document.querySelector('#health').textContent.includes('access token')"
        )
        assert not page.locator("#token-dialog[open]").count()
        # ...and the next search asks again.
        page.click("#diverse")
        page.wait_for_selector("#token-dialog[open]")
        # Enter in the field is Continue, as a click on it would be.
        page.fill("#token-input", "wrong")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#token-error').textContent !== ''")
        page.fill("#token-input", "s3cret-token")
        page.keyboard.press("Enter")
        tokened.wait_for_results(4)  # the thumbnails loaded too: the cookie carries the token
        page.reload()
        tokened.wait_for_results(4)
        assert not page.locator("#token-dialog[open]").count(), "asked once, then kept"
    finally:
        tokened.close()
        server.stop()


def test_screenshot_for_the_readme(laptop):
    """docs/gallery.png, shown in the README: "more like this" of a red image (the gallery's
    random-weights model ranks texts arbitrarily, but images by what they look like)."""
    page = laptop.page
    laptop.open()
    laptop.search("a red circle", k=24)
    red = next((i for i, name in enumerate(laptop.names()) if name.startswith("red/")), 0)
    page.locator("#results .card-open").nth(red).click()
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.wait_for_url("**similar=**")
    laptop.wait_for_results(24)
    page.evaluate("window.scrollTo(0, 0)")
    taken = page.screenshot()
    assert len(taken) > 10_000
    if changed_visibly(SCREENSHOT, taken):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(taken)


def changed_visibly(stored: Path, taken: bytes) -> bool:
    """Whether the page looks different from the stored screenshot: a test run rewrites
    docs/gallery.png when the page changed, not for a few pixels of anti-aliasing noise."""
    if not stored.exists():
        return True
    before = np.asarray(Image.open(stored).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(io.BytesIO(taken)).convert("RGB"), dtype=np.int16)
    return before.shape != after.shape or int(np.abs(before - after).max()) > 32
