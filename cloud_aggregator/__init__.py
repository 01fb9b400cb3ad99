"""MedChain cloud_aggregator."""
