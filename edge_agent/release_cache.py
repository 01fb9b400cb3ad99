"""Global-model releases a device has received, held by (version, sha256) until one is announced.

The aggregator retains every release on ``model/{version}`` (chunked on ``model/{version}/{i}``
when large) and names the one a round starts from, with the sha256 of its payload, in the
retained ``round/current`` announcement. A device therefore

- keys what it has seen by **(version, sha256)**, never by version alone: a retained release
  left on the broker by an earlier deployment (same version number, other content) must not
  hide the real one that arrives after it;
- hands a release over for training or installation only when an announcement (or the
  device's own pin, ``pinned``) names its sha256; a release nobody announced is held a while,
  then dropped and counted (``unannounced``), and never blocks a later real one;
- reassembles chunked releases per whole-message sha256, because two deployments can give the
  same message id to different releases.

Pure: the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Collection

from common import fl_protocol as fl
from common.fl_patch import ModelPatch, apply_patch, decode_patch
from common.protocol import ProtocolError

_LOGGER = logging.getLogger(__name__)

__all__ = ["MAX_RELEASE_BYTES", "ReleaseCache", "ReleaseKey"]

ReleaseKey = tuple[str, str]  # (version, sha256 hex of the whole release payload)
MAX_HELD = 4  # releases kept (the announced one, the next, a stale or forged one...)
MAX_RELEASE_BYTES = 64 * 1024 * 1024  # a device's release is ~100 KB; bounds reassembly memory


class ReleaseCache:
    """Releases received on ``model/#``, by (version, sha256).

    Parameters
    ----------
    pinned : collection of str
        sha256 of release payloads this device accepts without an announcement.
    max_held : int
        Releases kept; the oldest unannounced one goes first.
    ttl_s : float
        Seconds a partly received chunked release is kept.

    Attributes
    ----------
    unannounced : int
        Releases dropped without an announcement naming them (stale, forged or superseded).
    """

    def __init__(
        self, pinned: Collection[str] = (), max_held: int = MAX_HELD, ttl_s: float = 900.0
    ) -> None:
        self.pinned = frozenset(pinned)
        self.max_held = max_held
        self.ttl_s = ttl_s
        self.unannounced = 0
        self._held: OrderedDict[ReleaseKey, fl.ModelRelease] = OrderedDict()
        self._handed: set[ReleaseKey] = set()
        self._announced: set[ReleaseKey] = set()  # of the held releases
        self._wanted: ReleaseKey | None = None
        self._reassemblers: OrderedDict[str, fl.Reassembler] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def get(self, key: ReleaseKey) -> fl.ModelRelease | None:
        """The held release of ``key``, if any."""
        return self._held.get(key)

    def feed(self, version: str, payload: bytes, now_s: float) -> ReleaseKey | None:
        """One payload received on ``model/{version}[/i]``; the key of a release it completes.

        A release already held (a retained message delivered again) returns its key without
        being decoded again. Raises ``ProtocolError`` (or what a decoder raises) on bad input.
        """
        whole = self._reassemble(payload, now_s)
        if whole is None:
            return None
        key = (version, hashlib.sha256(whole).hexdigest())
        if key in self._held:
            self._held.move_to_end(key)
            return key
        release = fl.decode_model(whole)
        if release.version != version:
            raise ProtocolError(f"release {release.version!r} on the topic of {version!r}")
        self._held[key] = release
        if key == self._wanted:
            self._announced.add(key)
        self._evict()
        return key

    def feed_patch(self, payload: bytes) -> ReleaseKey | None:
        """A patch (``model/v{n}/from/v{m}``): the key of the release it rebuilds from a held
        one, or None when its base is not held (the device then needs the full release).
        Raises ``ProtocolError`` for a malformed patch or one that rebuilds the wrong bytes."""
        patch = decode_patch(payload)
        key = (patch.version, patch.result_sha256)
        if key in self._held:
            return key
        base = self._held.get((patch.base_version, patch.base_sha256))
        if base is None:
            return None
        self._held[key] = _rebuilt(base, patch)
        if key == self._wanted:
            self._announced.add(key)
        self._evict()
        return key

    def announce(self, key: ReleaseKey | None) -> bool:
        """An announcement names ``key`` (None: no round open); True if it is held.

        Held releases of the same version with another sha256 are dropped and counted: the
        announcement says they are not the release of that version.
        """
        self._wanted = key
        if key is None:
            return False
        for other in [k for k in self._held if k[0] == key[0] and k != key]:
            self._drop(other, "another release of that version is announced")
        if key in self._held:
            self._announced.add(key)
        return key in self._held

    def missing(self) -> ReleaseKey | None:
        """The announced release when it is not held (the broker can be asked to resend it)."""
        wanted = self._wanted
        return wanted if wanted is not None and wanted not in self._held else None

    def to_install(self) -> list[fl.ModelRelease]:
        """Releases the announcement or a pin vouches for, each handed over once."""
        out = []
        for key, release in self._held.items():
            if key not in self._handed and (key == self._wanted or key[1] in self.pinned):
                self._handed.add(key)
                out.append(release)
        return out

    def _reassemble(self, payload: bytes, now_s: float) -> bytes | None:
        parsed = fl.parse_chunk(payload, MAX_RELEASE_BYTES, MAX_RELEASE_BYTES)
        if parsed is None:
            return payload
        sha = parsed[0].sha256
        r = self._reassemblers.pop(sha, None) or fl.Reassembler(
            MAX_RELEASE_BYTES, max_pending=1, ttl_s=self.ttl_s
        )
        whole = r.feed(payload, now_s, MAX_RELEASE_BYTES)
        if whole is None:  # still incomplete: keep it (bounded), newest last
            self._reassemblers[sha] = r
            while len(self._reassemblers) > self.max_held:
                self._reassemblers.popitem(last=False)
        return whole

    def _evict(self) -> None:
        while len(self._held) > self.max_held:
            old = next((k for k in self._held if k != self._wanted), None)
            if old is None:
                return
            self._drop(old, "more releases arrived than a device keeps")

    def _drop(self, key: ReleaseKey, why: str) -> None:
        del self._held[key]
        if key not in self._announced and key[1] not in self.pinned:
            self.unannounced += 1
            _LOGGER.warning("release %s (sha256 %s) dropped unused: %s", key[0], key[1][:12], why)
        self._handed.discard(key)
        self._announced.discard(key)


# Patches already applied in this process, by (base sha256, result sha256): devices that share
# a process (the in-memory grid's thousands, a phone acting as hub) rebuild and hash each
# round's release once, not once each. Safe to share: the base is held under its checked
# sha256 and the result was checked against the patch's before it was remembered.
_REBUILT: OrderedDict[tuple[str, str], fl.ModelRelease] = OrderedDict()
_REBUILT_MAX = 4


def _rebuilt(base: fl.ModelRelease, patch: ModelPatch) -> fl.ModelRelease:
    key = (patch.base_sha256, patch.result_sha256)
    release = _REBUILT.get(key)
    if release is None:
        release = apply_patch(base, patch)
        _REBUILT[key] = release
        while len(_REBUILT) > _REBUILT_MAX:
            _REBUILT.popitem(last=False)
    return release
