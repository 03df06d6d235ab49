"""The demo page draws the timeline of a long upload, in headless Chromium (under the page's CSP)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from test_serve_browser import browser_page, playwright_api, serve_app  # noqa: F401  (fixtures)
from test_serve_common import FakePredictor

SR = 16000


def _tones(seconds_each: float) -> np.ndarray:
    """A low tone, then a high one: the fake model's top band changes half way."""
    t = np.arange(int(seconds_each * SR)) / SR
    return np.concatenate([0.5 * np.sin(2 * np.pi * 200 * t), 0.5 * np.sin(2 * np.pi * 6000 * t)]).astype(np.float32)


def test_page_draws_the_timeline_of_a_long_upload(serve_app, browser_page, tmp_path):  # noqa: F811
    server = serve_app(FakePredictor(), max_upload_bytes=400_000, max_seconds=5.0, window_seconds=0.5)
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    short = tmp_path / "short.wav"
    sf.write(short, _tones(0.2), SR, subtype="PCM_16")
    page.set_input_files("#file-input", str(short))
    page.wait_for_selector("#results:not([hidden])")
    assert page.locator("#timeline-figure").is_hidden()  # one window: no timeline

    long = tmp_path / "long.wav"
    sf.write(long, _tones(1.5), SR, subtype="PCM_16")
    page.set_input_files("#file-input", str(long))
    page.wait_for_selector("#timeline-figure:not([hidden])")
    assert page.locator("#timeline").is_visible()
    caption = page.inner_text("#timeline-caption")
    assert "11 windows" in caption and "segments:" in caption
    # something was drawn: coloured (not white/grey) pixels on the canvas
    coloured = page.eval_on_selector("#timeline", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) n++;
        return n; }""")
    assert coloured > 200
    assert not [m for m in page.console_log if m.startswith(("pageerror", "error"))], page.console_log
