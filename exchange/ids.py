"""Typed identifiers used across the protocol (checked by mypy, free at run time)."""

from typing import NewType

#: A member node, named by its ISO 3166-1 alpha-2 country code in upper case ("FR").
NodeId = NewType("NodeId", str)
#: A Kafka topic name, prefix included ("ncp.alerts.v1").
Topic = NewType("Topic", str)
#: A key's identifier in the trust list: 16 lower-case hex digits, the first
#: 8 bytes of the SHA-256 of the raw public key.
KeyId = NewType("KeyId", str)
