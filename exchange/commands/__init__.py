"""Sub-command groups of the ``exchange`` console script."""
