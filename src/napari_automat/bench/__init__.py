"""Benchmark of simulated images with known truth."""
