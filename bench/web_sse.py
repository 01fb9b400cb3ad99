"""Benchmark of the web live feed: MQTT-payload dispatch rate and SSE fan-out latency.

Prints one JSON object. Two parts:

1. ``dispatch_viewed`` / ``dispatch_unviewed``: decode + hub ingest of ``live`` payloads
   (10 samples at 125 Hz, 80 ms batches) for 10 patients, with one SSE subscriber each / with
   nobody watching (the SSE message is then not built); messages per second.
2. ``sse``: the app on a threaded Werkzeug server, ``--clients`` concurrent EventSource-like
   HTTP clients (patient bearer tokens) on one patient; chunks published into the hub at
   25 Hz; latency from publish to receipt of the parsed event in each client (ms).

Usage: ``python -m bench.web_sse [--clients 20] [--messages 250]`` (from the repo root)
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import sys
import threading
import time
from collections import Counter

import numpy as np
from werkzeug.serving import make_server

from bench import results as registry
from common.payloads import encode_chunk
from common.types import SignalChunk, StreamKind
from store.factory import open_store
from web.app import create_app
from web.live.dispatch import dispatch
from web.live.fanout import Fanout
from web.live.hub import LiveHub
from web.security import new_patient_token
from web.settings import WebSettings

FS = 125.0
N = 10
T0 = 1_700_000_000_000_000_000


def chunk(seq: int) -> SignalChunk:
    x = np.sin(2 * np.pi * 1.2 * (seq + np.arange(N)) / FS)[:, None] * 1000.0
    return SignalChunk(StreamKind.ECG, FS, T0 + round(seq * 1e9 / FS), x, seq)


def bench_dispatch(
    n_msgs: int = 20_000, patients: int = 10, viewers: bool = True
) -> dict[str, float]:
    fan = Fanout(patients, 1 << 16)
    hub = LiveHub(10.0, 50, fan)
    subs = [fan.subscribe(f"p{i}") for i in range(patients)] if viewers else [True]
    payloads = [(f"medchain/v1/live/p{i % patients}", encode_chunk("live", f"p{i % patients}", chunk((i // patients) * N)))
                for i in range(n_msgs)]  # fmt: skip
    counters: Counter[str] = Counter()
    t = time.perf_counter()
    for topic, payload in payloads:
        dispatch([hub], topic, payload, counters)
    dt = time.perf_counter() - t
    assert counters["accepted_live"] == n_msgs and all(subs)
    return {
        "messages": n_msgs,
        "msgs_per_s": round(n_msgs / dt),
        "us_per_msg": round(1e6 * dt / n_msgs, 1),
    }


def sse_client(port: int, token: str, sent: dict[int, float], lat: list[float], ready: threading.Event,
               stop: threading.Event) -> None:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/patients/p1/stream", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    buf = b""
    while not stop.is_set():
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"event: snapshot"):
            ready.set()
        if line.startswith(b"data: ") and b'"stream"' in line:
            seq = json.loads(line[6:])["seq"]
            if seq in sent:
                lat.append(1000.0 * (time.perf_counter() - sent[seq]))
        buf = line
    del buf
    conn.close()


def bench_sse(clients: int, messages: int) -> dict[str, float]:
    store = open_store("sqlite://")
    store.register_client("p1")
    token, token_hash = new_patient_token()
    store.create_patient_token(token_hash, "p1", expires_at=None)
    settings = WebSettings(  # one patient code watched by every client: lift the per-code cap
        secret_key=secrets.token_hex(32), broker_url="", sse_max_clients=clients + 1,
        sse_max_per_principal=clients, sse_keepalive_s=1.0,
    )  # fmt: skip
    app = create_app(settings, store=store)
    hub: LiveHub = app.extensions["medchain.hub"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sent: dict[int, float] = {}
    lats: list[list[float]] = [[] for _ in range(clients)]
    stop = threading.Event()
    readies = [threading.Event() for _ in range(clients)]
    threads = [threading.Thread(target=sse_client, args=(server.server_port, token, sent, lats[i], readies[i], stop),
                                daemon=True) for i in range(clients)]  # fmt: skip
    for th in threads:
        th.start()
    for r in readies:
        r.wait(10)
    for k in range(messages):
        sent[k * N] = time.perf_counter()
        hub.on_live("p1", chunk(k * N))
        time.sleep(0.04)
    time.sleep(0.5)
    stop.set()
    hub.fanout.close_all()
    server.shutdown()
    server.server_close()
    store.close()
    all_lat = sorted(x for lat in lats for x in lat)
    return {
        "clients": clients,
        "messages": messages,
        "delivered": len(all_lat),
        "expected": clients * messages,
        "latency_ms_p50": round(statistics.median(all_lat), 2),
        "latency_ms_p95": round(all_lat[int(0.95 * (len(all_lat) - 1))], 2),
        "latency_ms_max": round(all_lat[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=250)
    registry.add_record_argument(parser, "web_sse")
    args = parser.parse_args()
    out = {"dispatch_viewed": bench_dispatch(), "dispatch_unviewed": bench_dispatch(viewers=False),
           "sse": bench_sse(args.clients, args.messages)}  # fmt: skip
    print(json.dumps(out))
    if args.record:
        registry.record(args.record, out, sys.argv)


if __name__ == "__main__":
    main()
