"""Tests against a real Kafka broker (and real stores): marked ``integration``."""
