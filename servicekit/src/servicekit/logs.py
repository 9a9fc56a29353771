"""JSON logging: one JSON object per line on stdout, for every logger.

The contract (fields, types, levels) is ``docs/log-schema.md``; the FireLens
configuration parses and routes on it. :func:`configure_logging` is called at
start-up (again in tests: every logger, used before or not, follows the last
call). After it, structlog loggers and every standard library logger
(uvicorn, SQLAlchemy, ``warnings``) render through the same processors, and an
uncaught exception becomes one ``critical`` line with its traceback inside.

Lines written while an event loop runs in the writing thread (every line of a
request) are written to stdout together once the loop has run what was ready
when the first of them was written (:func:`flush_lines`, scheduled with
``call_soon`` by :class:`servicekit.turns.EndOfTurn`): one ``write`` system
call for all the lines of that turn of the loop instead of one per line, which
was the largest single cost of logging (docs/performance.md). No timer:
writing every 5 ms instead (a ``call_later`` timer), to gather the lines of
several turns, cost a loaded service more CPU per request than it saved
(docs/performance.md, round 8). Some lines do not wait: an ``error`` or
``critical`` line is written at once, after what waits; so are lines written
outside a running loop (start-up, other threads, after the loop has stopped).
Lines still waiting when their loop stops are written with the next line, or
when the process exits normally. Only a process killed outright (``SIGKILL``,
or a signal it does not handle) or one that ends with ``os._exit`` can lose
lines: those below ``error`` of the loop's last turn. Lines written by several
threads keep the order of each thread.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from servicekit.turns import EndOfTurn

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

_service_name = "unknown"  # set by configure_logging
_LEVELS = logging.getLevelNamesMapping()


def _levels_from(numeric_level: int) -> frozenset[str]:
    return frozenset(name.lower() for name, number in _LEVELS.items() if number >= numeric_level)


_enabled_levels = _levels_from(logging.INFO)  # the level names written; set by configure_logging
_generation = 0  # bumped by configure_logging: loggers rebuild on their next call

# Records that duplicate what the access log line already carries.
_REDUNDANT_UVICORN_MESSAGES = frozenset({"Exception in ASGI application"})


class _Clock:
    """The current time as a line's ``timestamp`` (ISO 8601, UTC, milliseconds).

    The date and time of day are formatted once per second, the text once per
    millisecond: the lines of one millisecond share it.
    """

    millisecond = -1
    second = -1
    prefix = ""
    text = ""

    @classmethod
    def now(cls) -> str:
        millisecond = time.time_ns() // 1_000_000
        if millisecond != cls.millisecond:
            second, fraction = divmod(millisecond, 1000)
            if second != cls.second:
                moment = datetime.fromtimestamp(second, UTC)
                cls.prefix, cls.second = moment.strftime("%Y-%m-%dT%H:%M:%S."), second
            cls.text, cls.millisecond = f"{cls.prefix}{fraction:03d}Z", millisecond
        return cls.text


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = _Clock.now()
    return event_dict


def _add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    trace_id = trace_id_var.get()
    if trace_id is not None:
        event_dict.setdefault("trace_id", trace_id)
    return event_dict


_TRACEBACK_START = "Traceback (most recent call last):"


def _traceback_out_of_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn logs a failed lifespan (start-up or shutdown) as the traceback's
    # text itself: the traceback belongs in "exception", as everywhere else.
    # A lifespan cancelled by a forced stop (a second signal) is expected: one
    # warning, no traceback.
    event = event_dict.get("event")
    if isinstance(event, str) and event.startswith(_TRACEBACK_START):
        traceback = event.rstrip("\n")
        if traceback.endswith("CancelledError"):
            event_dict["event"] = "lifespan cancelled"
            event_dict["level"] = "warning"
        else:
            event_dict["exception"] = traceback
            event_dict["event"] = "lifespan failed"
    return event_dict


def _service_adder(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict["service"] = service
        return event_dict

    return add_service


def _level_name(_: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # structlog passes the method name ("warning", "exception"...); stdlib
    # records arrive with "level" already set by the foreign pre-chain.
    level = event_dict.get("level", method_name)
    if level == "exception":
        level = "error"
    elif level == "warn":
        level = "warning"
    event_dict["level"] = level
    return event_dict


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> bytes:
    return orjson.dumps(event_dict, default=str)


def _render_json_str(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    return orjson.dumps(event_dict, default=str).decode()


def _shared_processors(service: str) -> list[Processor]:
    return [
        _level_name,
        _timestamp,
        _service_adder(service),
        _add_request_context,
        structlog.processors.format_exc_info,
    ]


class _DropRedundant(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn ends some of its messages with a newline.
        return record.getMessage().strip() not in _REDUNDANT_UVICORN_MESSAGES


class _StdoutHandler(logging.Handler):
    """Hands what the ``ProcessorFormatter`` renders to the writer (see the module)."""

    def __init__(self, formatter: structlog.stdlib.ProcessorFormatter) -> None:
        super().__init__()
        self._structlog_formatter = formatter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self._structlog_formatter.format(record).encode()
            if record.levelno >= logging.ERROR:
                _write_line_now(line)
            else:
                _write_line(line)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _emit(lines: list[bytes]) -> None:
    lines.append(b"")  # the last line's newline
    stream = sys.stdout.buffer
    stream.write(b"\n".join(lines))
    stream.flush()


# Lines waiting to be written together (servicekit.turns: at the end of the
# loop's turn, at once outside a loop, at exit); past 256 written at once.
_lines = EndOfTurn(_emit, cap=256)
_write_line = _lines.add
# An ``error`` line or worse: what waits and then the line, at once.
_write_line_now = _lines.now


def flush_lines() -> None:
    """Write the lines waiting to be written together (none: nothing)."""
    _lines.flush()


class _StdoutBytesLogger:
    """structlog's logger: hands each rendered line to the writer (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: bytes) -> None:
        _write_line(message)

    def msg_now(self, message: bytes) -> None:
        _write_line_now(message)

    debug = info = warning = warn = log = msg
    error = critical = exception = fatal = msg_now


def _stdout_logger_factory(name: str = "app", *_: Any) -> _StdoutBytesLogger:
    return _StdoutBytesLogger(name)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of the process to stdout as one JSON line.

    ``level`` is a standard level name; records below it are dropped before
    they are rendered. Safe to call again (tests do): the last call wins, for
    loggers already used too (:class:`_Logger`).
    """
    global _service_name, _generation, _enabled_levels  # one process, one service
    _service_name = service
    _generation += 1
    numeric_level = _LEVELS[level.upper()]
    _enabled_levels = _levels_from(numeric_level)
    shared = _shared_processors(service)

    structlog.configure(
        processors=[_add_logger_name, *shared, _render_json],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_stdout_logger_factory,
        # Each _Logger caches its bound logger until the next configuration.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            _add_logger_name,
            *shared,
            _traceback_out_of_event,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render_json_str],
        use_get_message=True,
    )
    handler = _StdoutHandler(formatter)
    handler.addFilter(_DropRedundant())

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aws_xray_sdk"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # The service middleware writes the one access line per request.
    logging.getLogger("uvicorn.access").disabled = True
    # Per-request chatter of libraries: the access lines already tell it.
    # The X-Ray SDK logs each emitted segment at DEBUG. Keep its warnings and errors.
    for noisy in ("aws_xray_sdk",):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.WARNING))

    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _add_logger_name(logger: WrappedLogger, _: str, event_dict: EventDict) -> EventDict:
    record: logging.LogRecord | None = event_dict.get("_record")
    event_dict["logger"] = record.name if record is not None else logger.name
    return event_dict


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    get_logger("servicekit.uncaught").critical("uncaught exception", exc_info=(exc_type, exc, tb))


class _Logger:
    """A named structlog logger that follows the latest :func:`configure_logging`.

    The bound logger is built on first use and kept until the configuration
    changes (structlog's own cache would keep the first configuration for
    good); a call costs what a call on structlog's cached logger costs.
    """

    __slots__ = ("_bound", "_generation", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._generation = -1

    def __getattr__(self, attribute: str) -> Any:
        if self._generation != _generation:
            self._bound = structlog.get_logger(self._name).bind()
            self._generation = _generation
        return getattr(self._bound, attribute)


def get_logger(name: str) -> Any:
    """A structlog logger whose lines carry ``logger=name``, under the latest configuration."""
    return _Logger(name)


def _stamp(logger: str, event: str, level: str, line: dict[str, Any]) -> dict[str, Any]:
    """``line`` (its own fields first) with the fields every line has, in the
    order the processor chain writes them, request context aside."""
    line["event"] = event
    line["logger"] = logger
    line["level"] = level
    line["timestamp"] = _Clock.now()
    line["service"] = _service_name
    return line


def write_record(logger: str, event: str, level: str, fields: dict[str, Any]) -> None:
    """Write one line with the fields every line has, whatever the configured level.

    For records that must not be filtered out by ``LOG_LEVEL`` (the metrics
    lines). The line still follows docs/log-schema.md.
    """
    _write_line(orjson.dumps(_stamp(logger, event, level, {**fields}), default=str))


def level_enabled(level: str) -> bool:
    """Whether lines of ``level`` are written under the configured level.

    ``level`` is a level's name in lower case, as structlog's methods are
    named (``"info"``, ``"warning"``...); any other string is not enabled.
    """
    return level in _enabled_levels


_AT_ONCE_LEVELS = frozenset({"error", "critical", "fatal"})


def write_event(logger: str, event: str, level: str, fields: dict[str, Any]) -> None:
    """The line ``get_logger(logger).<level>(event, **fields)`` writes, without structlog.

    For the one line of every request (the access log): the same fields in
    the same order (the request's ``request_id`` and ``trace_id`` included),
    at a fraction of the processor chain's cost. ``fields`` is a dict the
    caller made for this line, with plain values (no exception: log those
    through structlog); it becomes the line. The caller checks
    :func:`level_enabled` first. ``tests/servicekit/test_log_writes.py`` holds
    the two lines equal.
    """
    line = orjson.dumps(
        _add_request_context(None, "", _stamp(logger, event, level, fields)), default=str
    )
    if level in _AT_ONCE_LEVELS:
        _write_line_now(line)
    else:
        _write_line(line)
