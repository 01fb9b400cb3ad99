"""MedChain web."""
