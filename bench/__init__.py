"""Benchmarks of mcp-reconciler against the emulator: ``python -m bench`` (see BENCHMARKS.md)."""
