"""Connector plugins: the small API a node hands them (:mod:`connectors.api`) and the
built-in connectors (:mod:`connectors.jsonl`)."""
