"""Benchmarks that measure explanation quality (datasets, runners, tables)."""
