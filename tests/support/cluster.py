"""A private 3-node NATS cluster (JetStream + MQTT 3.1.1 listener) for the cluster tests.

Every node listens on free loopback ports only (client, cluster routes, MQTT, monitoring) and
keeps its JetStream store in its own temporary directory; :func:`run_nats_cluster` stops the
nodes and removes the directories afterwards. The configuration written here is the one
docs/scale.md shows.

Devices and aggregator replicas reach the MQTT listeners through :class:`TcpBalancer`, a
round-robin TCP balancer on one loopback port that skips dead nodes, as a production L4 load
balancer (or DNS) in front of the cluster would: paho connects to one address, and a device
whose node died must land on another when it reconnects. (Our own 80 lines: no TCP balancer
ships with the machine's packages or the Python dependencies.) NATS clients need none: they
take the list of nodes and learn the cluster's members.

A missing ``nats-server`` binary fails in CI (``MEDCHAIN_REQUIRE_SERVICES=1``) and skips
elsewhere (:func:`tests.support.services.require_service`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.services import free_port, require_service, wait_port

CLUSTER_NAME = "medchain"


def node_conf(name: str, ports: dict[str, int], routes: list[int], store: Path) -> str:
    """The configuration of one node (ports: ``client``, ``cluster``, ``mqtt``, ``http``)."""
    route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
    return f"""server_name: {name}
listen: 127.0.0.1:{ports["client"]}
http: 127.0.0.1:{ports["http"]}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: 127.0.0.1:{ports["cluster"]}
  routes: [{route_urls}]
}}
mqtt {{
  listen: 127.0.0.1:{ports["mqtt"]}
  # the JetStream consumers behind the QoS 1 subscriptions of a client gone for good go after
  consumer_inactive_threshold: "1h"
}}
"""


@dataclass
class NatsNode:
    """One node: its name, ports, config and (while running) process."""

    name: str
    ports: dict[str, int]
    conf: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, exe: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our binary, our config
                [exe, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """SIGKILL: the node vanishes without closing anything cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def varz(self, path: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON (``jsz``, ``healthz``...)."""
        url = f"http://127.0.0.1:{self.ports['http']}/{path}"
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback monitoring
            return dict(json.loads(r.read()))


@dataclass
class NatsCluster:
    """A running cluster and the MQTT balancer in front of it."""

    nodes: list[NatsNode]
    balancer: TcpBalancer
    workdir: Path
    exe: str

    @property
    def nats_servers(self) -> str:
        """``nats://h:p,h:p,h:p`` (the aggregator's JetStream side)."""
        return "nats://" + ",".join(f"127.0.0.1:{n.ports['client']}" for n in self.nodes)

    @property
    def mqtt_url(self) -> str:
        """The devices' broker URL: the balancer in front of the nodes' MQTT listeners."""
        return f"mqtt://127.0.0.1:{self.balancer.port}"

    @property
    def grid_url(self) -> str:
        """The aggregator's ``--broker`` URL: JetStream nodes, the MQTT URL, and a 4 s
        acknowledgement wait (a dead replica's messages reach another within 4 s)."""
        return f"{self.nats_servers}?mqtt={self.mqtt_url}&ack_wait=4"

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one node."""
        self.node(name).kill()

    def restart(self, name: str) -> None:
        """Start a killed node again with its config and store."""
        node = self.node(name)
        node.start(self.exe)
        wait_port(node.ports["client"], 20)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every live node answers ``/healthz`` ok and agrees on a JetStream meta leader."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                live = [n for n in self.nodes if n.alive]
                leaders = {str(n.varz("jsz").get("meta_cluster", {}).get("leader")) for n in live}
                healthy = all(n.varz("healthz").get("status") == "ok" for n in live)
                if healthy and len(leaders) == 1 and "None" not in leaders and "" not in leaders:
                    return
                last = f"healthy={healthy} leaders={leaders}"
            except OSError as exc:  # a node still starting, or healthz answering 503
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"NATS cluster not ready after {timeout_s} s: {last}")

    def stream_leader(self, stream: str) -> str:
        """The node leading a JetStream stream (``$MQTT_msgs``...), from a live node's /jsz."""
        detail = self._stream_detail(stream)
        return str(detail.get("cluster", {}).get("leader", "")) if detail else ""

    def consumers(self, stream: str) -> list[dict[str, Any]]:
        """The stream's consumers (``name``, ``num_ack_pending``...), each as its leader node
        reports it (only the leader knows what is delivered and not yet acknowledged)."""
        out: dict[str, dict[str, Any]] = {}
        for n in self.nodes:
            if not n.alive:
                continue
            with contextlib.suppress(OSError):
                for c in self._stream_detail(stream, n).get("consumer_detail", []):
                    if c.get("cluster", {}).get("leader") == n.name:
                        out[c["name"]] = c
        return list(out.values())

    def _stream_detail(self, stream: str, node: NatsNode | None = None) -> dict[str, Any]:
        for n in [node] if node else self.nodes:
            if not n.alive:
                continue
            with contextlib.suppress(OSError):
                info = n.varz("jsz?accounts=true&streams=true&consumers=true")
                for acc in info.get("account_details", []):
                    for s in acc.get("stream_detail", []):
                        if s.get("name") == stream:
                            return dict(s)
        return {}


@contextlib.contextmanager
def run_nats_cluster(size: int = 3) -> Iterator[NatsCluster]:
    """Start ``size`` nodes on free loopback ports with JetStream and MQTT; stop them after."""
    exe = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if exe is None:
        require_service("nats-server", "apt-get install nats-server")
        raise AssertionError("unreachable")
    workdir = Path(tempfile.mkdtemp(prefix="medchain-nats-"))
    nodes: list[NatsNode] = []
    balancer: TcpBalancer | None = None
    try:
        nodes = _start_nodes(exe, workdir, size)
        balancer = TcpBalancer([("127.0.0.1", n.ports["mqtt"]) for n in nodes])
        cluster = NatsCluster(nodes, balancer, workdir, exe)
        cluster.wait_ready()
        balancer.start()
        yield cluster
    finally:
        if balancer is not None:
            balancer.stop()
        for n in nodes:
            n.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_nodes(exe: str, workdir: Path, size: int, tries: int = 3) -> list[NatsNode]:
    """Start the nodes on distinct free ports; when one does not come up (a port taken by
    another process between the check and the bind), start them all again on new ports."""
    log_tail = ""
    for attempt in range(tries):
        ports: list[dict[str, int]] = []
        taken: set[int] = set()
        for _ in range(size):
            node_ports: dict[str, int] = {}
            for key in ("client", "cluster", "mqtt", "http"):
                while (port := free_port()) in taken:
                    pass
                taken.add(port)
                node_ports[key] = port
            ports.append(node_ports)
        routes = [p["cluster"] for p in ports]
        nodes = []
        for i, p in enumerate(ports):
            name = f"n{i + 1}"
            conf = workdir / f"{name}-{attempt}.conf"
            conf.write_text(node_conf(name, p, routes, workdir / f"js-{name}-{attempt}"))
            nodes.append(NatsNode(name, p, conf, workdir / f"{name}-{attempt}.log"))
        for n in nodes:
            n.start(exe)
        try:
            for n in nodes:
                for key in ("client", "mqtt"):
                    wait_port(n.ports[key], 20)
            return nodes
        except TimeoutError:
            dead = [n for n in nodes if not n.alive]
            log_tail = " | ".join(n.log.read_text(errors="replace")[-300:] for n in dead)
            for n in nodes:
                n.stop()
    raise RuntimeError(f"NATS cluster did not start in {tries} tries: {log_tail}")


@dataclass
class TcpBalancer:
    """Round-robin TCP balancer on a free loopback port (see the module docstring).

    A client connection is paired with the next backend that accepts; when either side closes
    (a killed node), both are closed, so the client reconnects and lands on a live node.
    """

    backends: list[tuple[str, int]]
    port: int = field(default_factory=free_port)
    connections: int = 0
    _next: int = 0
    _server: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _socks: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, name="balancer", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)
        if self._server is not None:
            _close(self._server)

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            backend = self._connect_backend()
            if backend is None:
                _close(client)
                continue
            with self._lock:
                self._socks |= {client, backend}
                self.connections += 1
            for a, b in ((client, backend), (backend, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _connect_backend(self) -> socket.socket | None:
        for _ in range(len(self.backends)):
            with self._lock:
                host, port = self.backends[self._next % len(self.backends)]
                self._next += 1
            with contextlib.suppress(OSError):
                return socket.create_connection((host, port), timeout=1.0)
        return None

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self._lock:
                self._socks -= {src, dst}


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
