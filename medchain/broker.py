"""Start an MQTT broker for a single-machine run: Mosquitto if installed, else amqtt.

The broker runs as a child process bound to 127.0.0.1 on the chosen port, so ``medchain demo``
can stop it cleanly and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import MedchainError

_MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerStartError(MedchainError):
    """The broker did not come up."""


@dataclass
class BrokerProcess:
    """A broker child process.

    Attributes
    ----------
    kind : str
        ``"mosquitto"`` (MQTT 5 and 3.1.1) or ``"amqtt"`` (MQTT 3.1.1 only).
    port : int
        TCP port on 127.0.0.1.
    process : subprocess.Popen
        The child process.
    """

    kind: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker, killing it if it does not exit within ``timeout`` s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.3):
        return True
    return False


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in _MOSQUITTO_PATHS if Path(p).exists()), None)


def start_broker(port: int, prefer: str = "auto", log_file: Path | None = None) -> BrokerProcess:
    """Start a loopback broker on ``port``.

    Parameters
    ----------
    port : int
        Port to listen on (127.0.0.1 only).
    prefer : {"auto", "mosquitto", "amqtt"}
        ``auto`` uses Mosquitto when the binary exists, else the embedded amqtt broker.
    log_file : Path, optional
        Where the broker's output goes (discarded when None).

    Raises
    ------
    BrokerStartError
        If the port is taken or the broker does not listen within 10 s.
    """
    if port_open(port):
        raise BrokerStartError(f"port {port} is already in use; choose another with --mqtt-port")
    workdir = Path(tempfile.mkdtemp(prefix="medchain-broker-"))
    exe = find_mosquitto() if prefer in ("auto", "mosquitto") else None
    if prefer == "mosquitto" and exe is None:
        raise BrokerStartError("mosquitto is not installed (apt-get install mosquitto)")
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    if exe:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            "max_packet_size 4194304\n"
        )
        cmd = [exe, "-c", str(conf)]
        kind = "mosquitto"
    else:
        cmd = [sys.executable, "-m", "medchain.embedded_broker", "--port", str(port)]
        kind = "amqtt"
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)  # noqa: S603
    broker = BrokerProcess(kind, port, proc, workdir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            broker.stop()
            raise BrokerStartError(f"{kind} exited with code {proc.returncode} on start")
        if port_open(port):
            return broker
        time.sleep(0.1)
    broker.stop()
    raise BrokerStartError(f"{kind} did not listen on 127.0.0.1:{port} within 10 s")
