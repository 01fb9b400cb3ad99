"""Model versions and round metrics in SQL (shared by both backends)."""

# SQL here interpolates only module constants (column lists, lock clauses, ORDER direction);
# every value is a bound ? parameter.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from store.errors import CorruptStoreError, NotFoundError
from store.records import ModelVersion
from store.sql_base import Row, SqlStoreBase, Tx, dumps, loads, metric_value

_MODEL_COLS = "version, parent, round_id, sha256, size_bytes, format, metrics, card, created_at"
_METRIC_COLUMNS = (("round_id", "bigint"), ("client_id", "text"), ("name", "text"),
                   ("value", "float8"))  # fmt: skip


def model_from_row(row: Row) -> ModelVersion:
    """Build a record from a ``_MODEL_COLS`` row."""
    version, parent, round_id, sha, size, fmt, metrics, card, created = row
    return ModelVersion(
        int(version),
        None if parent is None else int(parent),
        None if round_id is None else int(round_id),
        str(sha),
        int(size),
        str(fmt),
        loads(metrics),
        loads(card),
        float(created),
    )


class ModelsMixin(SqlStoreBase):
    """Model versions and metrics."""

    def _insert_model(
        self,
        tx: Tx,
        blob: bytes,
        fmt: str,
        parent: int | None,
        metrics: Mapping[str, Any] | None,
        card: Mapping[str, Any] | None,
        round_id: int | None,
    ) -> ModelVersion:
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise TypeError(f"model bytes expected, got {type(blob).__name__}")
        if not fmt:
            raise ValueError("model format must not be empty")
        data = bytes(blob)
        if parent is not None:
            tx.execute("SELECT 1 FROM model_version WHERE version = ?", (parent,))
            if tx.one() is None:
                raise NotFoundError("model version", parent)
        tx.execute(
            "INSERT INTO model_version (parent, round_id, sha256, size_bytes, format, metrics,"
            " card, blob, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" RETURNING {_MODEL_COLS}",
            (
                parent,
                round_id,
                hashlib.sha256(data).hexdigest(),
                len(data),
                fmt,
                dumps(metrics),
                dumps(card),
                data,
                self._clock(),
            ),
        )
        row = tx.one()
        assert row is not None
        return model_from_row(row)

    def put_model(
        self,
        blob: bytes,
        *,
        format: str,  # noqa: A002 - matches the record field
        parent: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        card: Mapping[str, Any] | None = None,
        round_id: int | None = None,
    ) -> ModelVersion:
        """Store model bytes as a new, higher version."""
        with self._tx(write=True) as tx:
            return self._insert_model(tx, blob, format, parent, metrics, card, round_id)

    def get_model(self, version: int) -> ModelVersion:
        """Metadata of a version; NotFoundError if absent."""
        with self._tx(write=False) as tx:
            tx.execute(f"SELECT {_MODEL_COLS} FROM model_version WHERE version = ?", (version,))
            row = tx.one()
        if row is None:
            raise NotFoundError("model version", version)
        return model_from_row(row)

    def get_model_bytes(self, version: int) -> bytes:
        """Bytes of a version, verified against the stored sha256."""
        with self._tx(write=False) as tx:
            tx.execute("SELECT sha256, blob FROM model_version WHERE version = ?", (version,))
            row = tx.one()
        if row is None:
            raise NotFoundError("model version", version)
        data = bytes(row[1])
        if hashlib.sha256(data).hexdigest() != row[0]:
            raise CorruptStoreError(f"model version {version}: bytes do not match their sha256")
        return data

    def find_model(self, sha256: str) -> ModelVersion | None:
        """Latest version with these bytes, or None."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_MODEL_COLS} FROM model_version WHERE sha256 = ?"
                " ORDER BY version DESC LIMIT 1",
                (sha256.lower(),),
            )
            row = tx.one()
        return None if row is None else model_from_row(row)

    def latest_model(self, *, format: str | None = None) -> ModelVersion | None:  # noqa: A002
        """Highest version (of a format), or None."""
        sql = f"SELECT {_MODEL_COLS} FROM model_version"
        params: tuple[Any, ...] = ()
        if format is not None:
            sql += " WHERE format = ?"
            params = (format,)
        with self._tx(write=False) as tx:
            tx.execute(sql + " ORDER BY version DESC LIMIT 1", params)
            row = tx.one()
        return None if row is None else model_from_row(row)

    def list_models(self, *, limit: int = 50) -> list[ModelVersion]:
        """Newest first."""
        with self._tx(write=False) as tx:
            tx.execute(
                f"SELECT {_MODEL_COLS} FROM model_version ORDER BY version DESC LIMIT ?",
                (int(limit),),
            )
            return [model_from_row(r) for r in tx.all()]

    # -- metrics -------------------------------------------------------------------------------
    def _upsert_metrics(
        self, tx: Tx, round_id: int, metrics: Mapping[str, float], client_id: str
    ) -> None:
        self._upsert_metrics_of(tx, round_id, {client_id: metrics})

    def _upsert_metrics_of(
        self, tx: Tx, round_id: int, by_client: Mapping[str, Mapping[str, float]]
    ) -> None:
        """Upsert metrics of several clients ("" = the round) in one statement.

        One multi-row insert (PostgreSQL: one ``unnest`` of column arrays), not one statement
        per row: a round of 5,000 clients has tens of thousands of rows, and their one-by-one
        upserts were 9 % of the aggregator's time.
        """
        rows = {
            (cid, str(k)): (round_id, cid, str(k), metric_value(k, v))
            for cid, metrics in by_client.items()
            for k, v in metrics.items()
        }  # keyed: one statement may not upsert the same row twice (PostgreSQL refuses)
        self._insert_rows(
            tx,
            "round_metric",
            _METRIC_COLUMNS,
            list(rows.values()),
            "ON CONFLICT (round_id, client_id, name) DO UPDATE SET value = excluded.value",
            fetch=False,
        )

    def record_metrics(
        self, round_id: int, metrics: Mapping[str, float], *, client_id: str | None = None
    ) -> None:
        """Upsert metrics of a round or of one client in it."""
        with self._tx(write=True) as tx:
            tx.execute("SELECT 1 FROM fl_round WHERE round_id = ?", (round_id,))
            if tx.one() is None:
                raise NotFoundError("round", round_id)
            self._upsert_metrics(tx, round_id, metrics, client_id or "")

    def round_metrics(self, round_id: int) -> dict[str, float]:
        """Round-level metrics by name."""
        with self._tx(write=False) as tx:
            tx.execute(
                "SELECT name, value FROM round_metric WHERE round_id = ? AND client_id = ''"
                " ORDER BY name",
                (round_id,),
            )
            return {str(n): math.nan if v is None else float(v) for n, v in tx.all()}

    def client_metrics(self, round_id: int) -> dict[str, dict[str, float]]:
        """``{client_id: {name: value}}`` of a round: the numbers each accepted update carried
        (stored with it at intake), overlaid by those recorded for the client
        (:meth:`record_metrics`, :meth:`finalize_round`)."""
        out: dict[str, dict[str, float]] = {}
        with self._tx(write=False) as tx:
            tx.execute(
                "SELECT client_id, metrics FROM client_update WHERE round_id = ? ORDER BY client_id",
                (round_id,),
            )
            for cid, raw in tx.all():
                out[str(cid)] = {
                    str(k): float(v)
                    for k, v in loads(raw).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
            tx.execute(
                "SELECT client_id, name, value FROM round_metric"
                " WHERE round_id = ? AND client_id <> '' ORDER BY client_id, name",
                (round_id,),
            )
            for cid, name, val in tx.all():
                out.setdefault(str(cid), {})[str(name)] = math.nan if val is None else float(val)
        return out

    def metric_history(
        self, name: str, *, task: str | None = None, limit: int = 100
    ) -> list[tuple[int, float]]:
        """``(round_id, value)`` of a round-level metric, oldest first."""
        sql = (
            "SELECT m.round_id, m.value FROM round_metric m JOIN fl_round r"
            " ON r.round_id = m.round_id WHERE m.client_id = '' AND m.name = ?"
        )
        params: list[Any] = [name]
        if task is not None:
            sql += " AND r.task = ?"
            params.append(task)
        sql += " ORDER BY m.round_id DESC LIMIT ?"
        params.append(int(limit))
        with self._tx(write=False) as tx:
            tx.execute(sql, params)
            rows = tx.all()
        return [(int(r), math.nan if v is None else float(v)) for r, v in reversed(rows)]
