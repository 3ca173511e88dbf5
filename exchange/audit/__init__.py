"""The auditor's replay: read topic history, verify every record, check every chain.

- :mod:`exchange.audit.checks`: the pure per-(sender, topic) chain checks;
- :mod:`exchange.audit.chains`: what the chain checks keep, as columns;
- :mod:`exchange.audit.tally`: the counts;
- :mod:`exchange.audit.digest`: verified records reduced to what the replay keeps;
- :mod:`exchange.audit.verify_pool`: verification (and Kafka reading) on every core;
- :mod:`exchange.audit.reader`: the only Kafka-touching module (no consumer group);
- :mod:`exchange.audit.archive`: Avro object container export / import;
- :mod:`exchange.audit.replay`: the loop tying them together;
- :mod:`exchange.audit.report`, :mod:`exchange.audit.html`: the reports;
- :mod:`exchange.audit.cli`: ``exchange audit replay`` / ``exchange audit export``.
"""
