"""Versioned SQL migrations of the store (``NNNN_name.sql``, applied in order)."""
