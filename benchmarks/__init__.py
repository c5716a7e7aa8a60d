"""Benchmarks: a program, not tests (`python -m benchmarks.run`); never collected by `make test`."""
