"""The node's side of statistical indicators (issue 15).

- :mod:`nodes.stats.config`: the ``[stats]`` table.
- :mod:`nodes.stats.counting`: one small pure counting function per source (alerts,
  blacklist deltas, pseudonym queries and answers, quarantine).
- :mod:`nodes.stats.queries`: what those functions count, read from the store (SQLite or
  PostgreSQL) for one period.
- :mod:`nodes.stats.publish`: count a period, and queue its indicator (a new revision when
  the counts changed) with an audit entry.
- :mod:`nodes.stats.scheduler`: the daemon loop publishing closed periods.
- :mod:`nodes.stats.report` / :mod:`nodes.stats.render`: the federation's indicators from
  the store, as a table, CSV, JSON, PNG charts or HTML.
- :mod:`nodes.stats.cli`: ``exchange stats publish|report``.
"""
