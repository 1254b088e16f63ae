"""Benchmarks: run on demand (`python -m benchmarks`), print figures, never assert."""
