"""Finished spans as an OTLP/HTTP export request, written straight in protobuf's wire format.

The OpenTelemetry path's export thread turns every sampled span into bytes
for the collector. The exporter's own encoder
(``opentelemetry-exporter-otlp-proto-common``) builds a tree of protobuf
message objects per span (the span, each attribute's ``KeyValue`` and
``AnyValue``, the status) and then serializes the tree. :func:`encode_request`
writes the same message as bytes in one pass, at less than half the CPU
(``sbcntrctl bench`` prints both per span; docs/performance.md).

The contract: ``encode_request(spans)`` parses, with the OTLP protobuf
classes, to a message equal to what the exporter's ``encode_spans(spans)``
builds, for the spans the SDK finishes: attributes of every type the SDK
keeps (strings, booleans, int64 integers, floats, bytes, sequences and
mappings of them), events, links, trace state, status, dropped counts,
several resources and scopes. An attribute the exporter's encoder cannot
encode either (an integer outside int64, a string with a lone surrogate) is
left out of its span with a warning, as that encoder leaves it out.
``tests/servicekit/test_otlp_wire.py`` holds it to that, the library's
encoder as the reference. Field numbers are those of
``opentelemetry/proto/trace/v1/trace.proto`` (and ``common.proto``,
``resource.proto``, ``trace_service.proto``): fixed by protobuf's
compatibility rules, so an OTLP release cannot renumber them.

Wire format (https://protobuf.dev/programming-guides/encoding/): each field is
a tag (field number << 3 | wire type) then its value; wire type 0 is a
varint, 1 a little-endian 64-bit value, 2 a length-prefixed run of bytes (a
string, bytes or an embedded message), 5 a little-endian 32-bit value.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from servicekit.logs import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext

log = get_logger("servicekit.tracing")

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack

# Span.flags: the span says whether its parent is remote (SpanFlags in trace.proto).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

# The varints of 0..127 are one byte each: most lengths and every enum here.
_SMALL = tuple(bytes((n,)) for n in range(128))


def _varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a protobuf varint."""
    if value < 128:
        return _SMALL[value]
    if value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: ``tag``, the length of ``body``, then ``body``."""
    length = len(body)
    return b"".join((tag, _SMALL[length] if length < 128 else _varint(length), body))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` holding ``value`` (as the exporter's ``_encode_value``).

    Raises ``TypeError`` for a value OTLP has no field for and ``ValueError``
    for one it cannot hold (an integer outside int64, a string with a lone
    surrogate): the exporter's encoder refuses the same values.
    """
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} is outside OTLP's int64")
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)  # two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if value is None:
        return b""
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _field(b"\x32", _key_values(b"\x0a", value))
    raise TypeError(f"an attribute value of type {type(value).__name__} has no OTLP encoding")


# The encoded key of each attribute name met so far: the names are the
# instrumentation's, a few dozen at most (bounded all the same).
_KEYS: dict[str, bytes] = {}
_KEYS_MAX = 1024


def _key_value(tag: bytes, key: str, value: Any) -> bytes:
    """One ``KeyValue`` field numbered by ``tag``."""
    encoded_key = _KEYS.get(key)
    if encoded_key is None:
        encoded_key = _field(b"\x0a", str(key).encode())
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[key] = encoded_key
    return _field(tag, encoded_key + _field(b"\x12", _any_value(value)))


def _key_values(tag: bytes, values: Mapping[str, Any]) -> bytes:
    """The entries of a map value (``KeyValueList``): one that cannot be encoded fails it all."""
    return b"".join([_key_value(tag, key, value) for key, value in values.items()])


def _attributes(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """The attributes of a span, event, link, scope or resource, as ``KeyValue`` fields.

    An attribute that cannot be encoded is left out with a warning and the
    rest are kept, as the exporter's encoder does (``_encode_attributes``):
    the span still reaches X-Ray, and its batch with it.
    """
    out = []
    for key, value in attributes.items():
        try:
            out.append(_key_value(tag, key, value))
        except (TypeError, ValueError) as error:
            log.warning("trace attribute dropped", key=str(key), error=str(error))
    return b"".join(out)


def _flags(parent: SpanContext | None) -> bytes:
    remote = parent is not None and parent.is_remote
    return _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE if remote else _HAS_IS_REMOTE)


def _trace_state(context: SpanContext) -> str:
    state = context.trace_state
    return ",".join([f"{key}={value}" for key, value in state.items()]) if state else ""


def _event(event: Event) -> bytes:
    body = [b"\x09" + _FIXED64(event.timestamp), _field(b"\x12", event.name.encode())]
    if event.attributes:
        body.append(_attributes(b"\x1a", event.attributes))
    if event.dropped_attributes:
        body.append(b"\x20" + _varint(event.dropped_attributes))
    return _field(b"\x5a", b"".join(body))


def _link(link: Link) -> bytes:
    context = link.context
    body = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    # No trace state: the exporter's encoder leaves a link's out.
    if link.attributes:
        body.append(_attributes(b"\x22", link.attributes))
    if link.dropped_attributes:
        body.append(b"\x28" + _varint(link.dropped_attributes))
    body.append(b"\x35" + _flags(context))
    return _field(b"\x6a", b"".join(body))


def _span(span: ReadableSpan) -> bytes:
    """A ``ScopeSpans.spans`` field holding ``span``."""
    context = span.context
    parent = span.parent
    if context is None or span.start_time is None or span.end_time is None:
        raise ValueError("only a finished span can be exported")
    body = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if state := _trace_state(context):
        body.append(_field(b"\x1a", state.encode()))
    if parent is not None:
        body.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    body.append(_field(b"\x2a", span.name.encode()))
    body.append(b"\x30" + _SMALL[span.kind.value + 1])  # SPAN_KIND_INTERNAL is 1, and so on
    body.append(b"\x39" + _FIXED64(span.start_time))
    body.append(b"\x41" + _FIXED64(span.end_time))
    if attributes := span.attributes:
        body.append(_attributes(b"\x4a", attributes))
    if span.dropped_attributes:
        body.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body.append(_event(event))
    if span.dropped_events:
        body.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        body.append(_link(link))
    if span.dropped_links:
        body.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    status_body = b""
    if status.description:
        status_body = _field(b"\x12", status.description.encode())
    if code := status.status_code.value:
        status_body += b"\x18" + _SMALL[code]
    body.append(_field(b"\x7a", status_body))
    body.append(b"\x85\x01" + _flags(parent))  # field 16, fixed32
    return _field(b"\x12", b"".join(body))


def _scope(scope: InstrumentationScope | None) -> bytes:
    """The ``ScopeSpans.scope`` field (an empty scope when there is none)."""
    if scope is None:
        return b"\x0a\x00"
    body = [_field(b"\x0a", scope.name.encode())]
    if scope.version:
        body.append(_field(b"\x12", scope.version.encode()))
    if scope.attributes:
        body.append(_attributes(b"\x1a", scope.attributes))
    return _field(b"\x0a", b"".join(body))


def _schema_url(url: str | None) -> bytes:
    return _field(b"\x1a", url.encode()) if url else b""


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans``, grouped by resource then scope.

    Raises ``ValueError`` for a span that has not ended (the SDK exports
    none) and, as the exporter's encoder does, for a span or event name that
    is not valid Unicode.
    """
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        scopes = grouped.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope or None, []).append(_span(span))
    out = []
    for resource, scopes in grouped.items():
        body = [_field(b"\x0a", _attributes(b"\x0a", resource.attributes))]
        for scope, encoded in scopes.items():
            scope_spans = _scope(scope) + b"".join(encoded)
            if scope is not None:
                scope_spans += _schema_url(scope.schema_url)
            body.append(_field(b"\x12", scope_spans))
        body.append(_schema_url(resource.schema_url))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)
