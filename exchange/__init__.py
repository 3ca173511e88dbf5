"""The exchange protocol: what crosses the bus between Member States' nodes.

Schemas, codec, envelope, signing and encryption, trust list, topic names and
the auditor's replay. Pure functions where possible; Kafka access lives in
``exchange.bus`` alone. Depends on neither ``nodes`` nor ``connectors``.
"""
