"""Test helpers shared by the suites (service fixtures, data paths)."""
