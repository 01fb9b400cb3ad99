"""Schema migrations: fresh install, upgrade from v1 keeping data, refusal of a newer schema."""

from __future__ import annotations

import pytest

from common.types import Event
from store import SchemaVersionError, Store, open_store
from store.migrate import TOKENS, latest_version, migrations, render
from store.sql_base import SqlStoreBase
from tests.store.conftest import T0, Backend


def _tables(store: object) -> set[str]:
    assert isinstance(store, SqlStoreBase)
    with store._tx(write=False) as tx:
        if store.dialect.name == "sqlite":
            tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            tx.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        return {str(r[0]) for r in tx.all()} - {"sqlite_sequence"}


def _force_version(store: object, version: int) -> None:
    assert isinstance(store, SqlStoreBase)
    with store._tx(write=True) as tx:
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, "from_the_future", T0),
        )


def test_fresh_database_is_migrated_on_open(backend: Backend) -> None:
    # Execute
    store = backend.open()

    # Assert
    assert isinstance(store, Store)  # the backend satisfies the whole Protocol at run time
    assert store.schema_version() == latest_version() == len(migrations())
    assert {"model_version", "fl_round", "client_update", "prediction", "audit_log"} <= _tables(
        store
    )
    assert store.upgrade_schema() == []  # idempotent


def test_upgrade_from_v1_keeps_data(backend: Backend) -> None:
    # Prepare: a v1 database with federation data in it
    v1 = backend.open(schema="ignore")
    assert v1.upgrade_schema(target=1) == [1]
    assert v1.schema_version() == 1
    assert "prediction" not in _tables(v1)
    model = v1.put_model(b"v1-model", format="onnx")
    rid = v1.open_round(
        task="beat", strategy="fedavg", base_version=model.version, quorum=1, deadline=T0 + 9
    ).round_id
    v1.close()
    with pytest.raises(SchemaVersionError, match="medchain db upgrade"):
        backend.open(schema="check")

    # Execute
    upgraded = backend.open()

    # Assert
    assert upgraded.schema_version() == latest_version()
    assert upgraded.get_model_bytes(model.version) == b"v1-model"
    assert upgraded.get_round(rid).base_version == model.version
    assert upgraded.insert_predictions([]) == 0  # v2 tables usable
    assert backend.open(schema="check").schema_version() == latest_version()


def test_upgrade_to_v6_gives_event_labels_their_event(backend: Backend) -> None:
    # Prepare: a v5 database with a beat label, an event label on a start one event has and one
    # on a start two events share (a VT run and a tachycardia from the same beat)
    v5 = backend.open(schema="ignore")
    assert v5.upgrade_schema(target=5) == [1, 2, 3, 4, 5]
    assert isinstance(v5, SqlStoreBase)
    v5.insert_events([Event("p1:vt_run:1", "p1", "vt_run", 1, 2, {}),
                      Event("p1:tachy:1", "p1", "tachycardia", 1, 9, {}),
                      Event("p1:af:5", "p1", "af_episode", 5, 9, {})])  # fmt: skip
    with v5._tx(write=True) as tx:
        for lid, target, t in (("b", "beat", 3), ("one", "event", 5), ("two", "event", 1)):
            tx.execute(
                "INSERT INTO clinician_label (label_id, client_id, target, t_ns, label, author,"
                " note, state, created_at, updated_at)"
                " VALUES (?, 'p1', ?, ?, 'x', 'dr', '', 'pending', ?, ?)",
                (lid, target, t, T0, T0),
            )
    v5.close()
    # Execute
    upgraded = backend.open()
    # Assert: every label kept; the one event's id filled in, the ambiguous one left empty
    kept = {lb.label_id: lb.event_id for lb in upgraded.list_labels("p1")}
    assert kept == {"b": "", "one": "p1:af:5", "two": ""}
    second = upgraded.add_label(client_id="p1", target="event", t_ns=1, label="false_alarm",
                                author="dr", event_id="p1:tachy:1")  # fmt: skip
    assert second.label_id != "two" and len(upgraded.list_labels("p1")) == 4


@pytest.mark.parametrize("policy", ["upgrade", "check"])
def test_newer_schema_is_refused(backend: Backend, policy: str) -> None:
    # Prepare: a database migrated by a future MedChain
    store = backend.open()
    _force_version(store, latest_version() + 1)
    store.close()

    # Execute / Assert
    with pytest.raises(SchemaVersionError) as info:
        backend.open(schema=policy)
    assert (info.value.found, info.value.supported) == (latest_version() + 1, latest_version())
    ignored = backend.open(schema="ignore")  # `db status` can still look at it
    assert ignored.schema_version() == latest_version() + 1
    with pytest.raises(SchemaVersionError):
        ignored.upgrade_schema()


def test_two_replicas_migrating_at_once(backend: Backend) -> None:
    # Execute: two opens of an empty database (the second finds the work done)
    first = backend.open()
    second = backend.open()

    # Assert
    assert first.schema_version() == second.schema_version() == latest_version()


def test_bad_schema_policy(backend: Backend) -> None:
    with pytest.raises(ValueError, match="schema policy"):
        open_store(backend.url, schema="maybe")


@pytest.mark.parametrize("dialect", sorted(TOKENS))
def test_render_substitutes_every_token(dialect: str) -> None:
    for mig in migrations():
        # Execute
        statements = render(mig.sql, dialect)

        # Assert
        assert statements and all("{{" not in s and "--" not in s for s in statements)
        assert all(s.split()[0] in ("CREATE", "ALTER", "INSERT", "DROP") for s in statements)


def test_render_rejects_unknown_tokens() -> None:
    with pytest.raises(ValueError, match="unknown migration token"):
        render("CREATE TABLE t (x {{UUID}})", "sqlite")
