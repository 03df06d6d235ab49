"""The demo's HTTP API on the real uvicorn server (loopback), and its logic without HTTP."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import threading
import time
import warnings

import numpy as np
import pytest
import soundfile as sf

from conftest import make_signal
from soundclass.apps.serve import TOP_K, App, create_asgi_app, make_server
from soundclass.apps.serve.app import Admission, is_loopback, pick_upload
from soundclass.errors import ParameterError
from test_serve_common import (
    CLASSES,
    PNG_MAGIC,
    SMALL_LIMITS,
    TIMEOUT,
    FakePredictor,
    ServerPool,
    json_body,
    multipart,
    status_line,
    wav_bytes,
)


@pytest.fixture
def serve_app():
    with ServerPool() as start:
        yield start


@pytest.fixture
def server(serve_app):
    return serve_app(**SMALL_LIMITS)


# --------------------------------------------------------------------------- App (no HTTP)


def test_app_rejects_bad_limits():
    with pytest.raises(ParameterError, match="max_upload_bytes"):
        App(FakePredictor(), max_upload_bytes=0)
    with pytest.raises(ParameterError, match="max_seconds"):
        App(FakePredictor(), max_seconds=-1.0)


def test_app_resamples_to_the_model_rate():
    predictor = FakePredictor()
    out = App(predictor).predict_bytes(wav_bytes(make_signal(sr=22050, seconds=0.5), 22050))
    assert predictor.seen_sizes == [4000]  # 0.5 s at FEATURE.sr = 8000
    assert out["sr"] == 22050 and out["duration"] == pytest.approx(0.5)


def test_admission_counts_up_to_capacity():
    gate = Admission(2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter() and gate.active == 2
    with pytest.raises(ParameterError, match="capacity"):
        Admission(0)


def test_pick_upload_order():
    assert pick_upload([("comment", False, b"hi"), ("audio", False, b"A"), ("x", True, b"X")]) == b"A"
    assert pick_upload([("comment", False, b"hi"), ("up", True, b"F"), ("x", True, b"X")]) == b"F"
    assert pick_upload([("comment", False, b"hi"), ("other", False, b"O")]) == b"hi"


@pytest.mark.parametrize(("kwargs", "match"), [({"workers": 0}, "workers"), ({"queue": -1}, "queue"),
                                               ({"body_timeout": float("inf")}, "body_timeout"),
                                               ({"analysis_timeout": 0}, "analysis_timeout")])
def test_create_asgi_app_rejects_bad_limits(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        create_asgi_app(App(FakePredictor()), **kwargs)


def test_asgi_app_in_process_with_testclient():
    """The ASGI app alone (Starlette's TestClient, no socket): routes, headers, HEAD, 405."""
    with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 over httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    asgi = create_asgi_app(App(FakePredictor(), max_upload_bytes=100_000), workers=1, queue=0)
    with TestClient(asgi, base_url="http://127.0.0.1:8000") as client:
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        head = client.head("/api/info")
        assert head.status_code == 200 and head.content == b""
        wrong = client.get("/api/predict")
        assert wrong.status_code == 405 and "not allowed" in wrong.json()["error"]
        assert "content-security-policy" not in wrong.headers  # only on HTML
        ok = client.post("/api/predict", content=wav_bytes(make_signal(sr=8000, seconds=0.3), 8000))
        assert ok.status_code == 200 and len(ok.json()["top"]) == TOP_K
        foreign = client.get("/api/info", headers={"host": "evil.example"})
        assert foreign.status_code == 403


def test_a_stuck_analysis_answers_503_and_keeps_its_slot_until_it_ends():
    """Nothing waits forever: an analysis over its deadline is a 503 for the client, and its
    thread keeps the upload's slot until it really ends (no more work than threads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    fake = FakePredictor(delay=3.0)
    asgi = create_asgi_app(App(fake, max_upload_bytes=100_000), workers=1, queue=0, analysis_timeout=0.5)
    body = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    with TestClient(asgi, base_url="http://127.0.0.1:8000") as client:
        t0 = time.monotonic()
        slow = client.post("/api/predict", content=body)
        assert slow.status_code == 503 and "did not finish within 0.5 s" in slow.json()["error"]
        assert time.monotonic() - t0 < 2.5
        busy = client.post("/api/predict", content=body)  # the slot is still taken
        assert busy.status_code == 503 and busy.json()["error"].startswith("busy")
        deadline = time.monotonic() + 10
        while asgi.state.admission.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asgi.state.admission.active == 0


# --------------------------------------------------------------------------- pages


def test_page_and_static_files(server):
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b'id="file-input"' in body and b"/static/app.js" in body
    assert b"http://" not in body and b"https://" not in body  # no external resources
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("recorder-worklet.js", "text/javascript")]:
        status, headers, body = server.request("GET", f"/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind) and len(body) > 100
        assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/static/../serve.py", "/static/%2e%2e/serve.py", "/static/", "/nope", "/static/index.css"])
def test_unknown_paths_are_404(server, path):
    status, body = server.json("GET", path)
    assert status == 404 and "no such page" in body["error"]


def test_info(server):
    status, info = server.json("GET", "/api/info")
    assert status == 200
    assert info == {
        "model": "fake-bands", "classes": list(CLASSES), "n_classes": 7, "sr": 8000,
        "max_upload_bytes": 200_000, "max_seconds": 2.0, "top_k": 5,
    }


# --------------------------------------------------------------------------- predictions


def test_predict_valid_wav(server):
    data = wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)  # at the model's rate: no resampling
    status, out = server.json("POST", "/api/predict", data, {"Content-Type": "audio/wav"})
    assert status == 200, out
    assert len(out["top"]) == TOP_K
    labels = [t["label"] for t in out["top"]]
    assert len(set(labels)) == TOP_K and set(labels) <= set(CLASSES)
    ps = [t["p"] for t in out["top"]]
    assert ps == sorted(ps, reverse=True) and all(0 <= p <= 1 for p in ps)
    # the server's ranking is the model's
    expected = FakePredictor().predict_proba(sf.read(io.BytesIO(data), dtype="float32")[0])
    assert labels == [CLASSES[i] for i in np.argsort(-expected, kind="stable")[:TOP_K]]
    np.testing.assert_allclose(ps, np.sort(expected)[::-1][:TOP_K], rtol=1e-6)
    assert out["sr"] == 8000 and out["channels"] == 1 and out["duration"] == pytest.approx(1.0)
    assert out["truncated"] is False
    for key in ("waveform_png", "mel_png"):
        png = base64.b64decode(out[key])
        assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_multipart_upload_picks_the_file_field_exactly(server):
    wav = wav_bytes(make_signal(sr=8000, seconds=0.5), 8000)
    decoy = bytes(range(256)) * 3 + b"\r\n--not-the-boundary\r\n\r\n"
    body, ctype = multipart([("comment", None, b"hello"), ("upload", "a.bin", decoy), ("file", "clip.wav", wav)])
    status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
    assert status == 200, out
    assert len(out["top"]) == TOP_K and out["duration"] == pytest.approx(0.5)
    assert server.app.predictor.seen_sizes[-1] == 4000  # exactly the WAV, not the decoy


def test_multipart_first_file_otherwise(server):
    wav = wav_bytes(make_signal(sr=8000, seconds=0.25), 8000)
    body, ctype = multipart([("comment", None, b"hello"), ("upload", "a.wav", wav), ("other", "b.wav", b"BBB")])
    status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
    assert status == 200 and out["duration"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        (b"--b\r\nno header end", "multipart/form-data; boundary=b", "malformed multipart body"),
        (b"nothing here", "multipart/form-data; boundary=b", "malformed multipart body"),
        (b"--b--\r\n", "multipart/form-data; boundary=b", "no part"),
        (b"--b\r\n", "multipart/form-data", "boundary"),
    ],
)
def test_multipart_errors_are_400(server, body, ctype, match):
    status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
    assert status == 400 and match in out["error"], out


def test_long_clip_is_analysed_on_its_first_max_seconds(server):
    data = wav_bytes(make_signal(sr=8000, seconds=5.0), 8000)
    status, out = server.json("POST", "/api/predict", data)
    assert status == 200, out
    assert out["truncated"] is True
    assert out["duration"] == pytest.approx(5.0) and out["analysed_seconds"] == pytest.approx(2.0)
    assert server.app.predictor.seen_sizes[-1] == 16000


def test_path_like_file_name_is_never_used(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A real WAV on disk named by the client, but garbage sent: the answer must be about the garbage.
    victim = tmp_path / "victim.wav"
    victim.write_bytes(wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))
    before = victim.stat()
    for name in ("../../etc/passwd", str(victim), "../" * 8 + str(victim).lstrip("/")):
        body, ctype = multipart([("file", name, b"garbage, not audio" * 20)])
        status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
        assert status == 400 and "not a readable audio file" in out["error"]
        assert name not in out["error"] and "passwd" not in out["error"]
    # Valid audio under a path-like name: analysed, and nothing is written anywhere.
    target = tmp_path / "written.wav"
    for name in ("../../etc/passwd", str(target)):
        body, ctype = multipart([("file", name, wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))])
        status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
        assert status == 200 and len(out["top"]) == TOP_K
        assert "passwd" not in json.dumps(out)
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == ["victim.wav"]
    after = victim.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


# --------------------------------------------------------------------------- limits


def _post_head(server, headers: str) -> bytes:
    return f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{headers}\r\n".encode()


def test_too_large_upload_is_413_without_reading(server):
    # Announce 1 GB, send nothing: the answer must come at once.
    t0 = time.monotonic()
    answer = server.raw(_post_head(server, "Content-Type: audio/wav\r\nContent-Length: 1000000000\r\n"))
    assert time.monotonic() - t0 < 5.0
    assert status_line(answer) == 413
    err = json_body(answer)["error"]
    assert "1000000000 bytes" in err and "200000" in err


def test_too_large_body_is_413(server):
    status, out = server.json("POST", "/api/predict", b"\0" * 200_001)
    assert status == 413 and "larger than the limit" in out["error"]
    status, _ = server.json("POST", "/api/predict", wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))
    assert status == 200  # still serving


def _chunked(data: bytes, size: int = 4096) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))
    return out + b"0\r\n\r\n"


def test_chunked_upload_is_counted(server):
    ok = wav_bytes(make_signal(sr=8000, seconds=0.5), 8000)
    answer = server.raw(_post_head(server, "Connection: close\r\nTransfer-Encoding: chunked\r\n") + _chunked(ok))
    assert status_line(answer) == 200 and json_body(answer)["duration"] == pytest.approx(0.5)
    # no Content-Length to refuse up front: the streamed count passes the cap -> 413
    big = _chunked(b"\0" * 300_000)
    answer = server.raw(_post_head(server, "Connection: close\r\nTransfer-Encoding: chunked\r\n") + big)
    assert status_line(answer) == 413 and "more than 200000 bytes" in json_body(answer)["error"]


def test_missing_content_length_is_411(server):
    answer = server.raw(_post_head(server, "Connection: close\r\n"))
    assert status_line(answer) == 411 and "Content-Length required" in json_body(answer)["error"]


@pytest.mark.parametrize("value", ["ten", "-5"])
def test_invalid_content_length_is_400(server, value):
    # refused by uvicorn's HTTP parser (h11) before the app sees the request
    answer = server.raw(_post_head(server, f"Connection: close\r\nContent-Length: {value}\r\n"))
    assert status_line(answer) == 400


def test_client_gone_mid_upload_is_dropped_quietly(server):
    # Announce 100 bytes, send 10, close: there is nobody to answer; the server carries on.
    answer = server.raw(_post_head(server, "Content-Length: 100\r\n") + b"x" * 10, shut_write=True)
    assert answer == b"" or status_line(answer) == 400
    deadline = time.monotonic() + 5.0
    while server.server.asgi.state.admission.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.server.asgi.state.admission.active == 0  # the slot was given back
    assert server.json("GET", "/api/info")[0] == 200


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"garbage bytes that are no audio" * 4, "not a readable audio file"),
        (b"", "empty upload"),
    ],
)
def test_bad_audio_is_400_with_reason(server, data, match):
    status, out = server.json("POST", "/api/predict", data, {"Content-Type": "audio/wav"})
    assert status == 400 and match in out["error"]


def test_nan_audio_is_400(server):
    y = make_signal(sr=8000, seconds=0.2)
    y[5] = np.inf
    status, out = server.json("POST", "/api/predict", wav_bytes(y, 8000, subtype="FLOAT"))
    assert status == 400 and "non-finite" in out["error"]


def test_server_survives_a_failing_model(serve_app):
    predictor = FakePredictor(fail=True)
    server = serve_app(predictor)
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    status, out = server.json("POST", "/api/predict", data)
    assert status == 500 and "model exploded" in out["error"]
    predictor.fail = False
    status, out = server.json("POST", "/api/predict", data)
    assert status == 200 and len(out["top"]) == TOP_K


def test_foreign_host_and_origin_are_refused(server):
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    status, out = server.json("POST", "/api/predict", data, {"Host": "evil.example:8000"})
    assert status == 403 and "loopback" in out["error"]
    status, out = server.json("POST", "/api/predict", data, {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in out["error"]
    ok = {"Origin": f"http://127.0.0.1:{server.port}"}
    assert server.json("POST", "/api/predict", data, ok)[0] == 200
    assert server.json("GET", "/api/info", None, {"Host": f"localhost:{server.port}"})[0] == 200


def test_concurrent_requests_use_the_model_one_at_a_time(serve_app):
    predictor = FakePredictor(delay=0.05)
    server = serve_app(predictor, workers=2, queue=4)
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    statuses = []

    def post():
        statuses.append(server.json("POST", "/api/predict", data)[0])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert statuses == [200] * 4 and predictor.calls == 4
    assert not predictor.overlapped


def test_full_queue_answers_503_with_retry_after(serve_app):
    """workers=1, queue=1: two uploads are admitted, the third gets 503 + Retry-After at once."""
    predictor = FakePredictor(delay=1.0)
    server = serve_app(predictor, workers=1, queue=1)
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(server.json("POST", "/api/predict", data)[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    while server.server.asgi.state.admission.active < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    status, headers, body = server.request("POST", "/api/predict", data)
    assert time.monotonic() - t0 < 0.9  # not queued behind the model
    assert status == 503 and headers["retry-after"] == "1"
    assert "busy" in json.loads(body)["error"]
    too_big = server.raw(_post_head(server, "Content-Length: 1000000000\r\n"))
    assert status_line(too_big) == 413  # the cap is checked before admission
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(results) == [200, 200]
    assert server.json("POST", "/api/predict", data)[0] == 200  # free again


def test_make_server_rejects_bad_port_and_busy_port():
    with pytest.raises(ParameterError, match="port"):
        make_server(App(FakePredictor()), port=70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(ParameterError, match="cannot listen on 127.0.0.1"):
            make_server(App(FakePredictor()), port=taken.getsockname()[1])


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_server():
    server = make_server(App(FakePredictor()), host="[::1]", port=0, quiet=True).start()
    try:
        assert server.loopback_only and server.url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", server.server_address[1], timeout=TIMEOUT)
        conn.request("GET", "/api/info")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                              ("[::1]", True), ("localhost", True), ("LOCALHOST.", True),
                                              ("0.0.0.0", False), ("::", False), ("192.168.1.2", False),
                                              ("evil.example", False), ("", False)])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected
