"""Test certificates for the TLS tests: a CA, a broker certificate for 127.0.0.1, a client one."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import require_service


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, the broker's certificate and key, a client certificate and key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)  # noqa: S603


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             f"/CN={name}", "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    (folder / f"{name}.ext").write_text(ext + "\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "1", "-extfile", str(folder / f"{name}.ext"),
             "-out", str(cert))  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away PKI made with the openssl command."""
    if shutil.which("openssl") is None:
        require_service("openssl", "apt-get install openssl")
    folder = tmp_path_factory.mktemp("pki")
    ca = _ca(folder, "test-ca")
    server = _signed(folder, "broker", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = _signed(folder, "dev-tls", ca, "extendedKeyUsage=clientAuth")
    other, _ = _ca(folder, "other-ca")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other)
