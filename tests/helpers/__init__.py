"""Helpers shared by the tests and the benchmarks (brokers, topics)."""
