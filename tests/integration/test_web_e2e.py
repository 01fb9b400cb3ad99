"""End to end in a real headless Chromium: log in, watch a patient's live ECG and predictions
arrive over a real Mosquitto, label a beat and see the label reach the device's topic.

The device side is simulated by this test: it publishes MIT-BIH record 208 (many PVCs) as
``live`` chunks at 125 Hz and the record's reference beat labels as ``pred`` messages (the
stand-in for the edge model's output), exactly as the edge agent's uplink does.
Screenshots go to ``artifacts/web/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from scipy.signal import resample_poly
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from cloud_aggregator.config import AggregatorSettings
from cloud_aggregator.mqtt_io import PahoBroker
from cloud_aggregator.service import AggregatorService, subscriptions
from common.payloads import (
    LabelAck,
    Status,
    decode_label,
    encode_chunk,
    encode_label_ack,
    encode_status,
)
from common.pred_payloads import encode_predictions
from common.types import BeatPrediction, Event, SignalChunk, StreamKind
from store.factory import open_store
from tests.support.services import Mosquitto, free_port, require_service
from web.app import create_app
from web.settings import WebSettings

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "web"
PASSWORD = "e2e password 123"
SECRET = "e2e-key-8b4f2c6a1d3e5f7a9c0b2d4e6f8a1c3e0d"
FS = 125.0  # Hz, the edge's live-stream rate
CHUNK = 10  # samples per live message (80 ms)
ACC_FS = 50.0  # Hz
AAMI = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
}


@dataclass
class Recording:
    """ECG (µV) at 125 Hz and AAMI beat labels at sample indices of that rate."""

    ecg_uv: np.ndarray
    beats: list[tuple[int, str]]


def load_record(root: Path, name: str = "208", seconds: float = 60.0) -> Recording:
    import wfdb  # a dev dependency: a missing one must fail, not skip

    rec = wfdb.rdrecord(str(root / "mitdb" / name), sampto=int(360 * seconds), channels=[0])
    ann = wfdb.rdann(str(root / "mitdb" / name), "atr", sampto=int(360 * seconds))
    ecg = resample_poly(rec.p_signal[:, 0] * 1000.0, 25, 72)  # mV -> µV, 360 -> 125 Hz
    beats = [(int(round(s * FS / 360)), AAMI.get(sym, "Q")) for s, sym in zip(ann.sample, ann.symbol, strict=True)
             if sym in AAMI or sym in "/fQ"]  # fmt: skip
    return Recording(ecg, beats)


class Device:
    """A simulated edge device publishing live ECG, predictions and status; receives labels."""

    def __init__(self, port: int, rec: Recording, client_id: str = "p1") -> None:
        self.rec = rec
        self.cid = client_id
        self.labels: list[bytes] = []
        self.start_ns = time.time_ns() - 2 * 10**9
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{client_id}")
        self.client.on_message = lambda c, u, m: self.labels.append(bytes(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"medchain/v1/label/{client_id}", qos=1)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.published_samples = 0

    def t_ns(self, idx: int) -> int:
        return self.start_ns + round(idx * 1e9 / FS)

    def start(self) -> None:
        self.client.publish(f"medchain/v1/status/{self.cid}",
                            encode_status(Status(self.cid, True, time.time_ns(), "v2", 87.0,
                                                 '{"beats":3,"rejected":2,"s_in_af_as_n":true}')),
                            qos=1, retain=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        seq, next_beat, last_rr, acc_seq = 0, 0, float("nan"), 0
        acc_per_chunk = round(CHUNK / FS * ACC_FS)
        n = len(self.rec.ecg_uv)
        while not self._stop.is_set() and seq + CHUNK <= n:
            chunk = SignalChunk(
                StreamKind.ECG, FS, self.t_ns(seq), self.rec.ecg_uv[seq : seq + CHUNK, None], seq
            )
            self.client.publish(
                f"medchain/v1/live/{self.cid}", encode_chunk("live", self.cid, chunk), qos=0
            )
            # wrist/chest accelerometer (mg): gravity on z plus a slow sway, 3 axes at 50 Hz
            t = (acc_seq + np.arange(acc_per_chunk)) / ACC_FS
            acc = np.stack(
                [80 * np.sin(2 * np.pi * 0.3 * t), 40 * np.cos(2 * np.pi * 0.2 * t), 1000 + 0 * t],
                axis=1,
            )
            acc_chunk = SignalChunk(StreamKind.ACC, ACC_FS, self.t_ns(seq), acc, acc_seq)
            self.client.publish(
                f"medchain/v1/live/{self.cid}", encode_chunk("live", self.cid, acc_chunk), qos=0
            )
            acc_seq += acc_per_chunk
            seq += CHUNK
            self.published_samples = seq
            beats = []
            while next_beat < len(self.rec.beats) and self.rec.beats[next_beat][0] < seq - 0.3 * FS:
                idx, label = self.rec.beats[next_beat]
                prev = self.rec.beats[next_beat - 1][0] if next_beat else None
                last_rr = (idx - prev) / FS if prev is not None else float("nan")
                probs = {c: (0.92 if c == label else 0.02) for c in ("N", "S", "V", "F", "Q")}
                beats.append(
                    BeatPrediction(self.cid, self.t_ns(idx), idx, label, probs, "v2", last_rr)
                )
                next_beat += 1
            events = []
            if seq == int(6 * FS) // CHUNK * CHUNK:  # after 6 s: a tachycardia episode over 1-4 s
                start = self.t_ns(int(1 * FS))
                events.append(Event(f"{self.cid}:tachycardia:{start}", self.cid, "tachycardia", start,
                                    self.t_ns(int(4 * FS)), {"rate_bpm": 106.0}))  # fmt: skip
            if beats or events:
                payload = encode_predictions(self.cid, beats, events)
                self.client.publish(f"medchain/v1/pred/{self.cid}", payload, qos=1)
            time.sleep(CHUNK / FS / 2)  # twice real time: the 10 s window fills in 5 s

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def wait_js(page: object, expression: str, timeout: float = 20.0) -> object:
    """Poll a JS expression until truthy. (``wait_for_function`` evaluates strings with
    ``eval``, which the app's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => ({expression})")  # type: ignore[attr-defined]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


REFUSAL = "release gate: macro_f1 0.790 is 0.056 below the current model's 0.846"


def seed_rounds(store: object) -> None:
    """Rounds as the round engine writes them: 1, 2, 4, 5 closed with the server's validation
    scores, the devices' own evaluation and the plumbing; 3 refused by the release gate (no
    metrics, a reason); 6 open."""
    card = {
        "task": "beat",
        "classes": ["N", "S", "V", "F", "Q"],
        "input": {"fs_hz": 360, "window_s": 0.75},
    }
    st: Any = store
    base = st.put_model(b"seed", format="release", card=card, metrics={"macro_f1": 0.58}).version
    quality = ((0.63, 0.55), (0.66, 0.57), (None, None), (0.69, 0.6), (0.71, 0.64))
    for i, (f1, dev) in enumerate(quality):
        r = st.open_round(task="beat", strategy="fedavg", base_version=base, quorum=2,
                          deadline=time.time() + 60, selected_clients=("p1", "p2", "p3"))  # fmt: skip
        if f1 is None:
            st.claim_round(r.round_id, "agg-1", lease_s=30)
            st.fail_round(r.round_id, REFUSAL, worker="agg-1")
            continue
        for cid in ("p1", "p2", "p3"):
            st.record_update(round_id=r.round_id, client_id=cid, update_id=f"{r.round_id}-{cid}",
                             blob=b"u", n_samples=500)  # fmt: skip
        st.claim_round(r.round_id, "agg-1", lease_s=30)
        metrics = {"macro_f1": f1, "accuracy": 0.9 + i / 100, "kappa": 0.6 + i / 50,
                   "se_V": 0.85 + i / 100, "ppv_V": 0.9 - i / 200, "se_S": 0.4 + i / 40,
                   "ppv_S": 0.35 + i / 50, "f1_S": 0.37 + i / 45, "f1_V": 0.87 + i / 200,
                   "device_n": 900.0 + 40 * i, "device_macro_f1": dev,
                   "device_se_V": 0.78 + i / 50, "device_ppv_V": 0.8 + i / 100,
                   "device_se_S": 0.25 + i / 40, "device_ppv_S": 0.22 + i / 50,
                   "aggregate_s": 0.1 + i / 10, "round_s": 2.5 + 0.7 * i, "quorum": 2.0,
                   "selected": 3.0, "received": 3.0 - i % 2, "failures": float(i % 2),
                   "rejected": 0.0, "excluded": 0.0, "uplink_bytes_mean": 17_500.0 + 100 * i,
                   "weights_capped": 0.0, "norms_clipped": float(i == 3), "val_loss": 0.9 - f1}  # fmt: skip
        base = st.finalize_round(r.round_id, "agg-1", model_blob=f"m{i}".encode(),
                                 model_format="release", model_card={"federated": {"round_no": i + 1}},
                                 round_metrics=metrics).version  # fmt: skip
    st.open_round(task="beat", strategy="fedprox", base_version=base, quorum=2,
                  deadline=time.time() + 60)  # fmt: skip


@pytest.fixture()
def served(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[str, object]]:
    """The app on a free loopback port, fed by the private broker; yields (base URL, store)."""
    store = open_store(f"sqlite:///{tmp_path / 'e2e.db'}")
    store.create_user(
        "root", generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"), role="admin"
    )
    store.register_client("p1", task="beat", dataset="mitdb")
    settings = WebSettings(
        secret_key=SECRET, broker_url=mosquitto.url, sse_keepalive_s=1.0, sse_max_stream_s=120.0
    )
    app = create_app(settings, store=store)
    feed = app.extensions["medchain.feed"]
    assert feed.wait_connected(10)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The aggregator's ingestion writes what devices report (predictions, label receipts)
    agg = PahoBroker(mosquitto.url, "agg-e2e", subscriptions("agg"))
    agg.start(10.0)
    service = AggregatorService(store, agg, AggregatorSettings(worker="agg-e2e", poll_s=0.1))  # type: ignore[arg-type]
    stop = threading.Event()
    ingest = threading.Thread(target=service.run, args=(stop,), daemon=True)
    ingest.start()
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop.set()
        ingest.join(10)
        agg.stop()
        app.extensions["medchain.hub"].fanout.close_all()
        server.shutdown()
        server.server_close()
        thread.join(5)
        feed.stop()
        store.close()


@pytest.mark.datasets("mitdb")
def test_live_patient_page_predictions_and_labelling(served: tuple[str, object], mosquitto: Mosquitto,
                                                     data_root: Path) -> None:  # fmt: skip
    if not CHROMIUM.exists():
        require_service("chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Prepare
    base, store = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    device = Device(mosquitto.port, load_record(data_root))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            console_errors: list[str] = []
            page.on(
                "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e: console_errors.append(str(e)))

            # Execute: log in and open the patient
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "root")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/patients")
            page.click("a[href='/patients/p1']")
            page.wait_for_url(f"{base}/patients/p1")
            wait_js(page, "window.medchainLive && window.medchainLive.connected")
            device.start()

            # Assert: the plot fills and keeps updating (data count, renders, canvas pixels)
            wait_js(page, "(window.medchainLive.points.ecg || 0) > 300")
            first = page.evaluate(
                "({p: window.medchainLive.received.ecg, r: window.medchainLive.renders})"
            )
            canvas_before = page.locator("#plot-ecg canvas").screenshot()
            wait_js(page, f"window.medchainLive.received.ecg > {first['p'] + 250}")
            second = page.evaluate(
                "({p: window.medchainLive.received.ecg, r: window.medchainLive.renders})"
            )
            canvas_after = page.locator("#plot-ecg canvas").screenshot()
            assert second["r"] > first["r"] and canvas_after != canvas_before
            assert int(page.get_attribute("#plot-ecg", "data-points")) > 300
            assert page.is_visible("#card-acc") and not page.is_visible(
                "#card-ppg"
            )  # PPG only when sent
            wait_js(page, "(window.medchainLive.points.acc || 0) > 100")

            # Assert: predictions arrive and change (record 208 alternates N and V beats)
            seen = set()
            deadline = time.monotonic() + 20
            while len(seen) < 2 and time.monotonic() < deadline:
                text = page.text_content("#beat-class")
                if text in ("N", "V", "S", "F", "Q"):
                    seen.add(text)
                time.sleep(0.05)
            assert {"N", "V"} <= seen, seen
            wait_js(page, "document.querySelector('#hr').textContent !== '–'")
            hr = float(page.text_content("#hr"))
            assert 40 <= hr <= 160
            assert page.text_content("#device-status") == "device: online"
            detail = page.text_content("#device-detail") or ""
            assert "S calls inside AF reported as N" in detail and "2 not sent: malformed" in detail
            page.wait_for_selector("#events li.beat .snippet canvas")
            page.wait_for_selector("#events li.event .snippet canvas")  # the tachycardia episode
            assert page.text_content("#rhythm").startswith("Tachycardia")
            wait_js(page, "(window.medchainLive.points.ecg || 0) >= 1250")  # full 10 s window
            page.screenshot(path=str(ARTIFACTS / "patient_desktop.png"), full_page=True)

            # Phone layout: tiles stack above the plot, no horizontal scrolling
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{base}/patients/p1")
            wait_js(phone, "(window.medchainLive.points.ecg || 0) > 300")
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            tiles_box = phone.locator(".tiles").bounding_box()
            plot_box = phone.locator("#plot-ecg").bounding_box()
            assert (
                tiles_box["y"] + tiles_box["height"] <= plot_box["y"] and plot_box["width"] <= 390
            )
            phone.screenshot(path=str(ARTIFACTS / "patient_phone.png"), full_page=True)
            phone.close()

            # Execute: label the newest flagged V beat as S in the review page
            page.goto(f"{base}/labels?client_id=p1")
            # the newest beats may still wait for their snippet (ECG after the beat): take one with it
            item = page.locator("article.review-item[data-target=beat]:has(.snippet)").first
            t_ns = int(item.get_attribute("data-t-ns"))
            item.locator("select[name=label]").select_option("S")
            item.locator("input[name=note]").fill("aberrated, not ventricular")
            item.locator(".snippet canvas").wait_for()
            page.screenshot(path=str(ARTIFACTS / "labels.png"), full_page=True)
            item.locator("button[type=submit]").click()
            page.wait_for_selector(".flash.ok")

            # Assert: stored as delivered and received by the device on its label topic
            deadline = time.monotonic() + 10
            while not device.labels and time.monotonic() < deadline:
                time.sleep(0.05)
            label = decode_label(device.labels[0])
            assert (label.client_id, label.target, label.t_ns, label.label, label.author) == (
                "p1",
                "beat",
                t_ns,
                "S",
                "root",
            )
            [rec] = store.list_labels("p1")
            assert rec.state == "delivered" and rec.note == "aberrated, not ventricular"

            # The device's receipt (as the edge agent's outbox sends it) -> acknowledged
            device.client.publish("medchain/v1/labelack/p1",
                                  encode_label_ack(LabelAck("p1", (label.label_id,), time.time_ns())),
                                  qos=1).wait_for_publish(5)  # fmt: skip
            deadline = time.monotonic() + 10
            while store.list_labels("p1")[0].state != "acknowledged":
                assert time.monotonic() < deadline, "label receipt not recorded"
                time.sleep(0.05)
            page.goto(f"{base}/labels?client_id=p1&show=all")
            page.wait_for_selector(".badge.state-acknowledged")

            assert not console_errors, console_errors
        finally:
            browser.close()
            device.stop()


@pytest.fixture()
def served_offline(tmp_path: Path) -> Iterator[tuple[str, object, object]]:
    """The app without a broker on a free port; yields (base URL, store, live hub)."""
    store = open_store(f"sqlite:///{tmp_path / 'mine.db'}")
    store.create_user(
        "root", generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"), role="admin"
    )
    store.register_client("sim-patient-1", task="beat", dataset="simulated")
    app = create_app(WebSettings(secret_key=SECRET, broker_url=""), store=store)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", store, app.extensions["medchain.hub"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        store.close()


def test_patient_view_on_a_phone_from_the_qr_link(
    served_offline: tuple[str, object, object],
) -> None:
    if not CHROMIUM.exists():
        require_service("chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Prepare: 40 beats at 75 bpm (4 ventricular), an AF episode still going on
    base, store, hub = served_offline
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cid, t0 = "sim-patient-1", time.time_ns() - 60 * 10**9
    beats = [BeatPrediction(cid, t0 + i * 800_000_000, i, "V" if i % 10 == 9 else "N",
                            {"N": 0.9, "V": 0.1}, "sha256:feedfacecafe", 0.8) for i in range(40)]  # fmt: skip
    store.insert_predictions(beats)  # type: ignore[attr-defined]
    hub.on_predictions(cid, beats, [Event(f"{cid}:af:{t0}", cid, "af_episode", beats[-5].t_ns,  # type: ignore[attr-defined]
                                          beats[-1].t_ns, {"max_score": 0.9})])  # fmt: skip
    hub.on_status(Status(cid, True, time.time_ns(), "sha256:feedfacecafe", 80.0))  # type: ignore[attr-defined]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            errors: list[str] = []
            desk = browser.new_page(viewport={"width": 1280, "height": 900})
            desk.on("pageerror", lambda e: errors.append(str(e)))
            # Execute: a clinician creates an access code; the page shows it with a QR code
            desk.goto(f"{base}/login")
            desk.fill("input[name=username]", "root")
            desk.fill("input[name=password]", PASSWORD)
            desk.click("button[type=submit]")
            desk.wait_for_url(f"{base}/patients")
            desk.goto(f"{base}/patients/{cid}")
            assert desk.is_visible("#simulated-banner")
            desk.click("#access-codes button[type=submit]")
            desk.wait_for_selector("#access-qr")
            link = desk.text_content("#new-link") or ""
            code = desk.text_content("#new-token") or ""
            qr_width = desk.evaluate("document.getElementById('access-qr').naturalWidth")
            desk.screenshot(path=str(ARTIFACTS / "access_code.png"), full_page=True)

            # Execute: the patient opens the link on a phone (what the QR code holds)
            phone_ctx = browser.new_context(viewport={"width": 390, "height": 844},
                                            device_scale_factor=2, is_mobile=True, has_touch=True)  # fmt: skip
            phone = phone_ctx.new_page()
            phone.on("pageerror", lambda e: errors.append(str(e)))
            phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            phone.goto(link)
            assert phone.input_value("#access-code") == code
            assert "#code=" not in phone.url  # dropped from the address bar
            phone.click("#patient-login button[type=submit]")
            phone.wait_for_url(f"{base}/patients/{cid}")
            wait_js(phone, "window.medchainMine && window.medchainMine.updates > 0")
            phone.screenshot(path=str(ARTIFACTS / "patient_mine_phone.png"), full_page=True)

            # Assert: plain words, no model details, simulated said, fits the phone
            text = phone.inner_text("body")
            assert link.startswith(f"{base}/patient/login#code=") and qr_width > 100
            assert phone.text_content("#verdict") == (
                "possible atrial fibrillation — your care team has been told"
            )
            assert phone.text_content("#my-hr") == "75"
            assert phone.text_content("#flagged-count") == "4"
            assert phone.text_content("#my-device") == "connected"
            assert phone.is_visible("#simulated-banner")
            for hidden in ("p=", "sha256", "feedface", "model", "%"):
                assert hidden not in text, hidden
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            assert not errors, errors
        finally:
            browser.close()


def test_federation_page_shows_model_quality_first(
    served_offline: tuple[str, object, object],
) -> None:
    if not CHROMIUM.exists():
        require_service("chromium", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Prepare
    base, store, _ = served_offline
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    seed_rounds(store)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            errors: list[str] = []
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            # Execute
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "root")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/patients")
            page.goto(f"{base}/federation")
            wait_js(page, "window.medchainFederation && window.medchainFederation.ready")
            page.wait_for_selector("#quality-charts .plot[data-chart=macro_f1] canvas")
            drawn = page.evaluate("window.medchainFederation.charts")
            first_plot = page.evaluate("document.querySelector('.plot').dataset.chart")
            titles = page.locator("#quality-charts h3").all_text_contents()
            legend = page.inner_text("#quality-charts .metric:first-child .u-legend")
            tops = [page.locator(sel).bounding_box()["y"]
                    for sel in ("#quality", "#rounds", "#plumbing", "#controls")]  # fmt: skip
            shown = page.inner_text("#quality") + page.inner_text("#plumbing")
            reasons = page.locator("#rounds td.reason").all_text_contents()
            page.screenshot(path=str(ARTIFACTS / "federation.png"), full_page=True)
            page.click("#quality-detail-box summary")
            page.wait_for_selector("#quality-detail .plot canvas")
            detail = page.locator("#quality-detail h3").all_text_contents()
            page.locator("#quality").screenshot(path=str(ARTIFACTS / "federation_quality.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{base}/federation")
            wait_js(phone, "window.medchainFederation && window.medchainFederation.ready")
            fits = phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            phone.screenshot(path=str(ARTIFACTS / "federation_phone.png"), full_page=True)
            # Assert: model quality is the first chart, in %, with gaps for the rounds without it
            assert first_plot == "macro_f1" and drawn[0]["id"] == "macro_f1"
            plotted = [[v if v is None else round(v, 9) for v in s] for s in drawn[0]["data"]]
            assert plotted == [[63.0, 66.0, None, 69.0, 71.0, None],
                               [55.0, 57.0, None, 60.0, 64.0, None]]  # fmt: skip
            assert titles == ["Macro-F1 per round (%)", "VEB Se and +P (class V) (%)",
                              "SVEB Se and +P (class S) (%)"]  # fmt: skip
            assert detail[:3] == ["Accuracy, validation set (server) (%)",
                                  "Cohen's κ, validation set (server)",
                                  "SVEB Se, +P and F1 (class S) (%)"]  # fmt: skip
            assert "Labelled examples scored on the devices" in detail
            assert "validation set (server)" in legend
            assert "devices' own beats (before training)" in legend
            assert tops == sorted(tops)  # quality, rounds table, plumbing, then the controls
            assert "Round duration" in shown and "Upload per device (mean)" in shown
            for raw in ("macro_f1", "aggregate_s", "uplink_bytes_mean", "device_se_V"):
                assert raw not in shown, raw
            assert "val_loss" in shown  # a key without a human name keeps its own
            assert reasons == ["", "", "", REFUSAL, "", ""]  # newest first
            assert fits
            assert not errors, errors
        finally:
            browser.close()
