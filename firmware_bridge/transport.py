"""The small GATT transport seam between the device adapter and bleak (or a fake).

:class:`Transport` is everything :mod:`firmware_bridge.ble_source` needs from a BLE link;
:class:`firmware_bridge.ble.BleakTransport` implements it with bleak + bleak-retry-connector and
:class:`firmware_bridge.fake_transport.FakeTransport` plays recorded notifications through the
very same adapter code, so the adapter is tested without hardware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from common.errors import MedchainError

# (characteristic uuid, value) -> None; must not block: implementations only enqueue.
NotifyCallback = Callable[[str, bytes], None]


class BleError(MedchainError):
    """Base of the device-side errors (not found, link lost, refused commands)."""


class DeviceNotFoundError(BleError):
    """No device with this address or name answered a scan."""

    def __init__(self, target: str, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        super().__init__(f"no BLE device {target!r} found within {timeout_s:g} s")


class BluetoothUnavailableError(BleError):
    """The host has no usable Bluetooth stack (no adapter, bluetoothd or D-Bus)."""


class LinkLostError(BleError):
    """The link dropped (or an operation on it failed)."""


class Transport(Protocol):
    """One GATT connection to one device. Created fresh for every connection attempt."""

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        ...

    @property
    def description(self) -> str:
        """Address and name of the device (for logs and capture headers)."""
        ...

    async def connect(self, on_disconnect: Callable[[], None]) -> None:
        """Scan for and connect to the device; ``on_disconnect`` fires once if the link drops."""
        ...

    async def disconnect(self) -> None:
        """Close the link (idempotent)."""
        ...

    async def start_notify(self, char: str, callback: NotifyCallback) -> None:
        """Enable notifications/indications of ``char``."""
        ...

    async def stop_notify(self, char: str) -> None:
        """Disable notifications of ``char``."""
        ...

    async def write(self, char: str, data: bytes) -> None:
        """Write with response."""
        ...

    async def read(self, char: str) -> bytes:
        """Read the value of ``char``."""
        ...


TransportFactory = Callable[[], Transport]
