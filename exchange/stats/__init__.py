"""Statistical indicators on cyber crime: pure period, tally, suppression and correction logic.

No asyncio, no I/O: the node (``nodes.stats``) counts what its store holds into a
:class:`~exchange.stats.tally.Tally`, turns it into a suppressed
:class:`~exchange.models.StatisticalIndicator` for a :class:`~exchange.stats.period.Period`,
and the report picks each member's latest revision per period (:mod:`exchange.stats.latest`).
"""
