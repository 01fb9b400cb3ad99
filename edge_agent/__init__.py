"""MedChain edge_agent."""
