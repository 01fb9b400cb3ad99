"""MedChain firmware_bridge."""
