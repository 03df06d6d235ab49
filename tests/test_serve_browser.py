"""The demo page in headless Chromium (Playwright): upload, drop, size limit, microphone recording."""

from __future__ import annotations

import base64
import os
import re
import threading

import pytest
import soundfile as sf

from conftest import make_signal
from soundclass.apps.serve import TOP_K
from test_serve_common import CLASSES, SMALL_LIMITS, TIMEOUT, FakePredictor, ServerPool, wav_bytes


@pytest.fixture
def serve_app():
    with ServerPool() as start:
        yield start


@pytest.fixture
def server(serve_app):
    return serve_app(**SMALL_LIMITS)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def playwright_api():
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"optional extra: no Chromium browser at {CHROMIUM}")
    from playwright import sync_api  # a dev dependency: missing is an error, not a skip

    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def browser_page(playwright_api, request):
    """``browser_page(extra_args) -> page``; browsers are closed after the test."""
    browsers = []

    def open_page(extra_args=()):
        browser = playwright_api.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], timeout=30_000
        )
        browsers.append(browser)
        page = browser.new_page(viewport={"width": 960, "height": 1100})
        page.set_default_timeout(15_000)
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.console_log = console
        return page

    yield open_page
    for b in browsers:
        b.close()


def _shot(page, name: str) -> None:
    """Screenshots for looking at the page, only when SOUNDCLASS_SCREENSHOTS names a folder."""
    folder = os.environ.get("SOUNDCLASS_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def _assert_results(page) -> None:
    page.wait_for_selector("#results:not([hidden])")
    rows = page.locator("#top5 li")
    assert rows.count() == TOP_K
    pcts = [float(t.rstrip("%")) for t in page.locator("#top5 .pct").all_inner_texts()]
    assert pcts == sorted(pcts, reverse=True) and all(0 <= p <= 100 for p in pcts)
    labels = page.locator("#top5 .label").all_inner_texts()
    assert len(set(labels)) == TOP_K and set(labels) <= set(CLASSES)
    for img in ("#waveform", "#mel"):
        # decoded, non-empty and laid out
        assert page.eval_on_selector(img, "el => el.complete && el.naturalWidth > 100 && el.naturalHeight > 50")
        assert page.locator(img).is_visible()


def test_page_upload_in_chromium(server, browser_page, tmp_path):
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    wav = tmp_path / "crunch.wav"
    sf.write(wav, make_signal(sr=16000, seconds=1.5), 16000, subtype="PCM_16")
    page.set_input_files("#file-input", str(wav))
    _assert_results(page)
    assert "crunch.wav" in page.inner_text("#clip-info")
    assert page.locator("#error").is_hidden()
    _shot(page, "upload")

    # A bad file shows the API's reason on the page, and the server keeps working.
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"definitely not a wav file" * 10)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "not a readable audio file" in page.inner_text("#error")
    _shot(page, "error")
    assert not [m for m in page.console_log if m.startswith("pageerror")], page.console_log


def test_page_drop_and_size_limit_in_chromium(serve_app, browser_page):
    server = serve_app(max_upload_bytes=50_000, max_seconds=2.0)
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#upload-limits:has-text('analysed')")
    ok = base64.b64encode(wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)).decode()
    big = base64.b64encode(wav_bytes(make_signal(sr=8000, seconds=4.0), 8000)).decode()
    drop = """([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: 'audio/wav'}));
        document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    page.evaluate(drop, [big, "big.wav"])
    page.wait_for_selector("#error:not([hidden])")
    assert "larger than the limit" in page.inner_text("#error")
    page.evaluate(drop, [ok, "dropped.wav"])
    _assert_results(page)
    assert "dropped.wav" in page.inner_text("#clip-info")
    assert page.locator("#error").is_hidden()


def test_page_record_in_chromium_with_fake_microphone(server, browser_page):
    page = browser_page(FAKE_MIC_ARGS)
    page.context.grant_permissions(["microphone"], origin=server.url.rstrip("/"))
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    page.click("#record-btn")
    page.wait_for_selector("#record-btn:has-text('Stop')")
    page.wait_for_timeout(1200)
    page.click("#record-btn")
    _assert_results(page)
    info = page.inner_text("#clip-info")
    assert "the recording" in info
    seconds = float(re.search(r"· ([\d.]+) s", info).group(1))
    assert 0.5 < seconds < 5.0
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    # the fake device plays a beep: the recording is not silence
    assert server.app.predictor.calls == 1 and server.app.predictor.seen_peaks[0] > 0.01
    _shot(page, "record")



def test_page_retries_when_the_server_is_busy(serve_app, browser_page, tmp_path):
    """workers=1, queue=0 and a slow model: the page's upload meets a 503, waits Retry-After, succeeds."""
    predictor = FakePredictor(delay=1.5)
    server = serve_app(predictor, workers=1, queue=0, **SMALL_LIMITS)
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    blocker = threading.Thread(target=lambda: server.json("POST", "/api/predict", data), daemon=True)
    blocker.start()
    while predictor.calls == 0 and blocker.is_alive():  # the only slot is taken
        page.wait_for_timeout(20)
    wav = tmp_path / "later.wav"
    sf.write(wav, make_signal(sr=8000, seconds=0.5), 8000, subtype="PCM_16")
    page.set_input_files("#file-input", str(wav))
    page.wait_for_selector("#status:has-text('busy')")
    _assert_results(page)
    assert "later.wav" in page.inner_text("#clip-info") and page.locator("#error").is_hidden()
    blocker.join(TIMEOUT)
    assert predictor.calls == 2
