"""Pure shared code: types, wire protocol, signal processing. Imports nothing of ours."""
