"""bleak + bleak-retry-connector behind the :class:`~firmware_bridge.transport.Transport` seam.

The only module that imports bleak. Each :class:`BleakTransport` is one connection attempt: it
scans for a fresh ``BLEDevice`` (by address, else by name substring), connects with
``establish_connection`` (its own short retries for transient BlueZ errors) and forwards
notifications to the adapter's callback, which only enqueues.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware_bridge.gatt import HEART_RATE_SERVICE_UUID, PMD_SERVICE_UUID
from firmware_bridge.transport import (
    BluetoothUnavailableError,
    DeviceNotFoundError,
    LinkLostError,
    NotifyCallback,
)

_LOGGER = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_CB_UUID = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")  # macOS ids


def is_address(target: str) -> bool:
    """True for a MAC address or a CoreBluetooth device UUID (else it is a name)."""
    return bool(_MAC.match(target) or _CB_UUID.match(target))


class BleakTransport:
    """One bleak connection to ``target`` (address or name substring).

    Parameters
    ----------
    target : str
        ``AA:BB:CC:DD:EE:FF`` / CoreBluetooth UUID, or part of the advertised name
        (``Polar H10 1234ABCD``).
    scan_timeout_s : float
        Scan duration before :class:`DeviceNotFoundError`.
    max_attempts : int
        ``establish_connection`` attempts (it backs off 0.25-4 s between them itself).
    """

    def __init__(self, target: str, scan_timeout_s: float = 10.0, max_attempts: int = 3) -> None:
        self.target = target
        self.scan_timeout_s = scan_timeout_s
        self.max_attempts = max_attempts
        self._client: Any = None
        self._name = ""

    @property
    def is_connected(self) -> bool:
        """True while bleak reports the link up."""
        return bool(self._client is not None and self._client.is_connected)

    @property
    def description(self) -> str:
        """Address and name."""
        address = self._client.address if self._client is not None else self.target
        return f"{address} {self._name}".strip()

    async def connect(self, on_disconnect: Callable[[], None]) -> None:
        """Scan and connect; raises DeviceNotFoundError or LinkLostError."""
        from bleak import BleakScanner
        from bleak.exc import BleakError
        from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

        try:
            if is_address(self.target):
                device = await BleakScanner.find_device_by_address(
                    self.target, timeout=self.scan_timeout_s
                )
            else:
                wanted = self.target.lower()
                device = await BleakScanner.find_device_by_filter(
                    lambda d, adv: wanted in (d.name or adv.local_name or "").lower(),
                    timeout=self.scan_timeout_s,
                )
        except (BleakError, OSError) as exc:
            # No D-Bus socket / BlueZ / adapter: not something a retry fixes quickly.
            raise BluetoothUnavailableError(
                f"Bluetooth scan failed ({exc!r}); is bluetoothd running and an adapter present?"
            ) from exc
        if device is None:
            raise DeviceNotFoundError(self.target, self.scan_timeout_s)
        self._name = device.name or ""
        try:
            self._client = await establish_connection(
                BleakClientWithServiceCache,
                device,
                device.name or self.target,
                disconnected_callback=lambda _client: on_disconnect(),
                max_attempts=self.max_attempts,
                ble_device_callback=lambda: device,
            )
        except (BleakError, TimeoutError) as exc:
            raise LinkLostError(f"connecting to {self.target} failed: {exc}") from exc

    async def disconnect(self) -> None:
        """Disconnect (idempotent)."""
        if self._client is not None:
            await self._client.disconnect()

    async def start_notify(self, char: str, callback: NotifyCallback) -> None:
        """Enable notifications; the bleak callback forwards (char, bytes) and returns."""
        await self._call("start_notify", char, lambda _sender, data: callback(char, bytes(data)))

    async def stop_notify(self, char: str) -> None:
        """Disable notifications."""
        await self._call("stop_notify", char)

    async def write(self, char: str, data: bytes) -> None:
        """Write with response."""
        await self._call("write_gatt_char", char, data, response=True)

    async def read(self, char: str) -> bytes:
        """Read a characteristic."""
        return bytes(await self._call("read_gatt_char", char))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from bleak.exc import BleakError

        if self._client is None:
            raise LinkLostError("not connected")
        try:
            return await getattr(self._client, method)(*args, **kwargs)
        except (BleakError, EOFError) as exc:
            raise LinkLostError(f"{method} {args[0] if args else ''}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One advertising device."""

    address: str
    name: str
    rssi: int
    heart_rate: bool
    pmd: bool


async def scan(timeout_s: float = 5.0) -> list[ScanResult]:
    """Scan for ``timeout_s`` s and list devices, strongest first; flags HRS and Polar PMD.

    Raises
    ------
    BluetoothUnavailableError
        If no Bluetooth adapter is usable (message from bleak).
    """
    from bleak import BleakScanner
    from bleak.exc import BleakError

    try:
        found = await BleakScanner.discover(timeout=timeout_s, return_adv=True)
    except (BleakError, OSError) as exc:
        raise BluetoothUnavailableError(
            f"Bluetooth scan failed ({exc}); is bluetoothd running and an adapter present?"
        ) from exc
    results = []
    for device, adv in found.values():
        uuids = {u.lower() for u in adv.service_uuids}
        name = device.name or adv.local_name or ""
        results.append(
            ScanResult(
                device.address,
                name,
                int(adv.rssi),
                HEART_RATE_SERVICE_UUID in uuids,
                PMD_SERVICE_UUID in uuids or name.startswith("Polar"),
            )
        )
    return sorted(results, key=lambda r: -r.rssi)
