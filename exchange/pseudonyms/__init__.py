"""Pseudonym hit/no-hit sharing, the pure parts: normalization, blinding and the
federation pseudonym key, the CSV import's parsing and the responder's decisions."""
