"""Benchmarks: each prints one JSON object; speed goals live here, never in tests."""
