"""The complete SQL store: every mixin combined; backends only add connections."""

from __future__ import annotations

from store.sql_admin import AdminMixin
from store.sql_chunks import ChunksMixin
from store.sql_edge import EdgeMixin
from store.sql_labels import LabelsMixin
from store.sql_updates import UpdatesMixin


class SqlStore(UpdatesMixin, ChunksMixin, EdgeMixin, LabelsMixin, AdminMixin):
    """All :class:`~store.base.Store` methods over a backend's ``_tx``."""
