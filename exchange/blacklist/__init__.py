"""The joint blacklist's pure core: normalization, delta verdicts, export rules, rendering.

No I/O and no asyncio here: :mod:`.normalize` (one canonical form per entry),
:mod:`.deltas` (parsing a delta, ownership, ordering verdicts), :mod:`.policy` (which entries
a list exports), :mod:`.render` (RPZ, hosts and plain lists). The node side (store tables,
sync, exports, CLI) is ``nodes.blacklist``.
"""
