"""Typed identifiers used across the protocol (checked by mypy, free at run time)."""

import re
from typing import NewType

#: A member node, named by its ISO 3166-1 alpha-2 country code in upper case ("FR").
NodeId = NewType("NodeId", str)
#: The shape of a node id (two upper-case letters), for checking local input.
NODE_ID_RE = re.compile(r"^[A-Z]{2}$")
#: A Kafka topic name, prefix included ("ncp.alerts.v1").
Topic = NewType("Topic", str)
#: A key's identifier in the trust list: 16 lower-case hex digits, the first
#: 8 bytes of the SHA-256 of the raw public key.
KeyId = NewType("KeyId", str)
