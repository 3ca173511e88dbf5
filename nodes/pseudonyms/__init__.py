"""Pseudonym hit/no-hit sharing inside a node: the index tables, the responder, the CLI."""
