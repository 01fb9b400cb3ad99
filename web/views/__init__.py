"""Blueprints, one per area: account (log-in), patients, labels, federation."""
