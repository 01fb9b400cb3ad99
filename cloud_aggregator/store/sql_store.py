"""The complete SQL store: every mixin combined; backends only add connections."""

from __future__ import annotations

from cloud_aggregator.store.sql_admin import AdminMixin
from cloud_aggregator.store.sql_chunks import ChunksMixin
from cloud_aggregator.store.sql_edge import EdgeMixin
from cloud_aggregator.store.sql_updates import UpdatesMixin


class SqlStore(UpdatesMixin, ChunksMixin, EdgeMixin, AdminMixin):
    """All :class:`~cloud_aggregator.store.base.Store` methods over a backend's ``_tx``."""
