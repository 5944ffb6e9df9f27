"""Benchmarks (not tests): each module prints a table and writes bench/results/*.json."""
