"""``python -m tests.bench [NAME ...]``: run the benchmarks (see :mod:`tests.bench.harness`)."""

from tests.bench.harness import main

raise SystemExit(main())
