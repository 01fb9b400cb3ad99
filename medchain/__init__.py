"""The ``medchain`` command: one CLI over every MedChain package."""

__version__ = "0.1.0"
