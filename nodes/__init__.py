"""The node daemon: config, outbox and publisher, consumers, rules, store, operations."""
