"""MedChain models."""
