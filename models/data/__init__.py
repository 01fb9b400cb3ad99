"""Dataset readers (wfdb / CSV adapters) used by the task loaders."""
