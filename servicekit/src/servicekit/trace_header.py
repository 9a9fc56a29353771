"""The ``X-Amzn-Trace-Id`` header: what a service follows in it and what it answers.

One reading of the header for both tracing backends (:mod:`servicekit.tracing_xray`
and :mod:`servicekit.tracing_otel`), so that a service on either joins the same
traces and answers the same header. No tracing library is imported here.

The header is untrusted input: :func:`parse_trace_header` keeps a ``Root`` and
``Parent`` only when they have X-Ray's syntax, and a ``Sampled=0|1`` decision
only from a trusted upstream (``XRAY_TRUST_INCOMING_SAMPLING``), so a client
cannot force tracing. Anything malformed starts a new trace and is never logged.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable
from typing import Literal, NamedTuple

TRACE_HEADER = b"x-amzn-trace-id"
"""The header's name as ASGI gives it (lower case bytes)."""

TRACE_HEADER_MAX = 512
"""Longer headers are ignored whole (Root, Parent, Sampled, the ALB's Self and a
Lineage fit in well under this)."""

HOST_MAX = 255
"""The most of a ``Host`` header a span or segment records."""

_TRACE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
_SEGMENT_ID = re.compile(r"[0-9a-f]{16}")
# Well formed, but no trace: OpenTelemetry's invalid id, and X-Ray's epoch 0.
_ZERO_ROOT = "1-00000000-000000000000000000000000"
_ZERO_ROOT_BYTES = _ZERO_ROOT.encode()
# The header in the order and case X-Ray writes it (what callers send nearly
# always): the fields it holds mean what the general reading finds in them.
_CANONICAL = re.compile(
    rb"Root=(1-[0-9a-f]{8}-[0-9a-f]{24})(?:;Parent=([0-9a-f]{16}))?(?:;Sampled=([01?]))?"
)
_DECISIONS: dict[bytes | None, Sampled | None] = {b"0": 0, b"1": 1, b"?": "?", None: None}

Sampled = Literal[0, 1, "?"]


class TraceHeader(NamedTuple):
    """The parts of an incoming header a service follows; all None when it sent none.

    ``sampled`` is the caller's decision (``1``/``0``), ``"?"`` when the caller
    asks to be told the decision, or None to let the sampling rules decide.
    (A named tuple: one is made per request, and a tuple is the cheapest to make.)
    """

    root: str | None = None
    parent: str | None = None
    sampled: Sampled | None = None


NO_HEADER = TraceHeader()


def parse_trace_header(raw: bytes, *, trust_sampling: bool) -> TraceHeader:
    """The parts of an incoming ``X-Amzn-Trace-Id`` this service follows.

    ``Root`` and ``Parent`` are kept only when they have X-Ray's syntax (a
    malformed or all-zero root starts a new trace); ``Sampled=0|1`` only when the
    upstream is trusted (``Sampled=?``, a request for the decision, always).
    A header longer than :data:`TRACE_HEADER_MAX` is ignored whole.
    """
    if not raw or len(raw) > TRACE_HEADER_MAX:
        return NO_HEADER
    canonical = _CANONICAL.fullmatch(raw)
    if canonical is not None:  # as services and the X-Ray SDKs write it: read in one match
        root, parent, decision = canonical.groups()
        if root == _ZERO_ROOT_BYTES:
            return NO_HEADER
        return TraceHeader(
            root.decode(),
            None if parent is None else parent.decode(),
            _DECISIONS[decision] if trust_sampling or decision == b"?" else None,
        )
    return _read_fields(raw, trust_sampling=trust_sampling)


def _read_fields(raw: bytes, *, trust_sampling: bool) -> TraceHeader:
    """:func:`parse_trace_header` for any header of at most :data:`TRACE_HEADER_MAX` bytes."""
    fields: dict[str, str] = {}
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        fields[key.strip().lower()] = value.strip()
    root = fields.get("root", "")
    if not _TRACE_ID.fullmatch(root) or root == _ZERO_ROOT:
        return NO_HEADER
    parent = fields.get("parent")
    if parent is not None and not _SEGMENT_ID.fullmatch(parent):
        parent = None
    sampled: Sampled | None = None
    decision = fields.get("sampled")
    if decision == "?":
        sampled = "?"
    elif decision in ("0", "1") and trust_sampling:
        sampled = 1 if decision == "1" else 0
    return TraceHeader(root=root, parent=parent, sampled=sampled)


def incoming_trace(
    headers: Iterable[tuple[bytes, bytes]], *, trust_sampling: bool
) -> tuple[TraceHeader, str]:
    """The request's trace header as :func:`parse_trace_header` reads it, and its ``Host``.

    ``headers`` are the ASGI scope's; the host is cut to :data:`HOST_MAX`
    characters (it names the segment's or span's URL and feeds the sampling
    rules).
    """
    raw, host = b"", ""
    for name, value in headers:
        if name == TRACE_HEADER:
            raw = value
        elif name == b"host":
            host = value[:HOST_MAX].decode("latin-1")
    return parse_trace_header(raw, trust_sampling=trust_sampling), host


def trace_response_header(incoming: TraceHeader, trace_id: str, *, sampled: bool) -> bytes:
    """The ``X-Amzn-Trace-Id`` a service answers with.

    The trace id, and the decision only when the caller asked for it
    (``Sampled=?``), as the X-Ray SDK's ``prepare_response_header`` does.
    """
    if incoming.sampled == "?":
        return f"Root={trace_id};Sampled={int(sampled)}".encode("latin-1")
    return f"Root={trace_id}".encode("latin-1")


CALL_TRACE_HEADER = "X-Amzn-Trace-Id"


def call_trace_header(root: str, parent: str | None) -> str:
    """The ``X-Amzn-Trace-Id`` a call out carries, on either tracing path.

    Inside a sampled request, the trace and the calling span (``parent``, 16
    hex digits: the call's subsegment or client span) with ``Sampled=1``;
    inside an unsampled one (``parent`` None), the trace alone with
    ``Sampled=0``, so the callee records nothing and logs the same trace id.
    The format is X-Ray's (https://docs.aws.amazon.com/xray/latest/devguide/xray-concepts.html#xray-concepts-tracingheader).
    """
    if parent is None:
        return f"Root={root};Sampled=0"
    return f"Root={root};Parent={parent};Sampled=1"


def new_trace_id() -> str:
    """A new X-Ray trace id: version, epoch seconds (8 hex), 96 random bits (24 hex).

    Trace ids need to be unique, not unpredictable: no system call per request.
    """
    return f"1-{int(time.time()):08x}-{random.getrandbits(96):024x}"


def xray_trace_id(trace_id: int) -> str:
    """A 128-bit trace id (OpenTelemetry's form) in X-Ray's text form."""
    text = f"{trace_id:032x}"
    return f"1-{text[:8]}-{text[8:]}"


def trace_id_int(root: str) -> int:
    """The 128-bit integer of an X-Ray trace id :func:`parse_trace_header` accepted."""
    return int(root[2:10] + root[11:], 16)
