"""Live feed: MQTT live/pred/status in, per-patient ring buffers, fan-out to SSE clients."""
