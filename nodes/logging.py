"""structlog set-up: JSON lines when stderr is not a terminal, readable console output otherwise.

Rule for every caller: never log key material or message bodies above DEBUG; log message
ids, topics, offsets, counts and reason codes.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from nodes.config import LogConfig, LogFormat, LogLevel

_LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


def configure(config: LogConfig | None = None) -> None:
    """Configure structlog (and the stdlib root logger aiokafka writes to) for this process."""
    config = config or LogConfig()
    level = _LEVELS[config.level]
    use_json = config.format is LogFormat.JSON or (
        config.format is LogFormat.AUTO and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiokafka logs through the standard library: same format, and quieter than our lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))


def get_logger(**bound: Any) -> Any:
    """A structlog logger bound to ``bound``."""
    return structlog.get_logger().bind(**bound)
