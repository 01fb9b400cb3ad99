"""Each round's draw (who is invited) and the DP noise: unpredictable in production,
reproducible only when the settings fix a seed (simulations)."""

from __future__ import annotations

from cloud_aggregator.config import AggregatorSettings
from common import fl_protocol as fl
from common import protocol as proto
from store import Store
from tests.cloud_aggregator.service_support import CLIENTS, drain, online, seeded, service_on
from tests.store.conftest import Backend


def _draw(store: Store, backend: Backend, seed: int | None) -> fl.Invitation:
    """A new aggregator (settings seed ``seed``) opens the next attempt; its announced rule."""
    service, broker = service_on(store, backend, seed=seed)
    online(broker)
    drain(service, broker)
    service.advance()
    rnd = store.active_round("beat")
    assert rnd is not None
    announced = [p for t, p in broker.published if t == proto.round_current_topic() and p]
    ann = fl.decode_round(announced[-1])
    # the announced rule invites exactly the stored selection among the online devices
    assert tuple(c for c in CLIENTS if ann.invites(c)) == tuple(rnd.selected_clients)
    assert rnd.config["invitation"] == ann.invitation.to_dict()
    store.fail_round(rnd.round_id, "test: next attempt")
    return ann.invitation


def _salts(backend: Backend, seed: int | None) -> list[str]:
    store = seeded(backend)
    draws = [_draw(store, backend, seed) for _ in range(2)]
    assert [d.seed.rsplit("/", 1)[0] for d in draws] == ["1/1/0", "1/1/1"]
    return [d.seed.rsplit("/", 1)[1] for d in draws]


def test_default_settings_draw_unpredictably(backend: Backend) -> None:
    # before: the seed was "run/round/attempt" and the DP noise generator was seeded 0
    assert AggregatorSettings().seed is None
    a, b = _salts(backend, None)
    assert a != b


def test_a_fixed_seed_reproduces_the_draw(backend: Backend) -> None:
    a, b = _salts(backend, 7)
    assert a == b
