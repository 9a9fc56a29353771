"""Tracing with the AWS X-Ray SDK: one segment per request, subsegments for calls out.

The SDK's private API used here, each named by a test in
``tests/servicekit/test_private_hooks.py`` that fails when an upgrade removes
it (``aws-xray-sdk`` is bounded below its next minor release): the context's
``_is_subsegment``, the UDP emitter's ``_socket``, the recorder's
``_populate_runtime_context``, ``_aws_metadata`` and ``_origin``
(:func:`share_runtime_context`), and the centralized sampler's poller state
(:mod:`servicekit.sampling_centralized`).

The implementation behind :mod:`servicekit.tracing` when
``TRACING_BACKEND=xray-sdk`` (the default); that module imports this one only
then, so the OpenTelemetry path never loads the X-Ray SDK (nor the botocore it
imports).

* :class:`ContextVarContext` keeps the trace entities in a ``ContextVar``. The
  SDK's ``AsyncContext`` breaks under uvloop (every request answers 400) and
  loses the segment in ``asyncio.gather``; a context variable follows tasks,
  ``gather`` and the thread pool of sync endpoints.
* :class:`RequestTracer` traces each request for the service's middleware
  (:mod:`servicekit.middleware`): it joins the trace of an incoming
  ``X-Amzn-Trace-Id`` as :mod:`servicekit.trace_header` reads it, samples by
  the rules file, records method, URL, status, fault and error, gives the
  trace header to return, and ends the segment after the response body is
  sent.
* :func:`trace_call` makes each HTTP call out a ``remote`` subsegment that
  propagates the trace header (unsampled calls only propagate the header).
* :func:`instrument_sqlalchemy` records each SQL statement as a subsegment.
"""

from __future__ import annotations

import gc
import traceback
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.daemon_config import DaemonConfig
from aws_xray_sdk.core.emitters.udp_emitter import DEFAULT_DAEMON_ADDRESS, UDPEmitter
from aws_xray_sdk.core.models import http
from aws_xray_sdk.core.models.dummy_entities import DummySegment
from aws_xray_sdk.core.recorder import SERVICE_INFO
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler
from aws_xray_sdk.ext.util import calculate_sampling_decision
from starlette.types import Scope

from servicekit.asgi import call_url, client_facts, request_url
from servicekit.logs import get_logger, trace_id_var
from servicekit.sampling_centralized import ECS_ORIGIN, StoppableSampler
from servicekit.sampling_rules import LocalRules
from servicekit.trace_header import (
    CALL_TRACE_HEADER,
    TRACE_HEADER,
    TraceHeader,
    call_trace_header,
    incoming_trace,
    new_trace_id,
    trace_response_header,
)
from servicekit.turns import EndOfTurn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from servicekit.settings import ServiceSettings


log = get_logger("servicekit.tracing")


def release_import_time_sampler() -> None:
    """Give the SDK's global recorder a local sampler, and free the one the import made.

    Importing the SDK creates its recorder with a centralized sampler, which
    builds a botocore X-Ray client at once (about 16 MB resident). Sampling
    is local unless XRAY_CENTRALIZED_SAMPLING is on (:func:`configure` then
    makes a centralized sampler again), so the process's entry point
    (:func:`servicekit.tracing.preload`) drops the client right after the
    import, while the memory can still be reused by what the service loads
    next; freed after start-up, it would stay with the process. Importing this
    module changes nothing by itself.
    """
    xray_recorder.configure(sampler=LocalSampler())
    gc.collect()


class _Unsampled(NamedTuple):
    """The segment of an unsampled request, until something asks for it.

    Nothing of an unsampled request is sent, so no SDK object is built for it
    unless code calls the recorder (then a ``DummySegment`` is made on demand).
    """

    name: str
    trace_id: str


class ContextVarContext(Context):  # type: ignore[misc]
    """X-Ray context whose entity stack lives in a ``ContextVar``.

    The stack is an immutable tuple: a task (or thread-pool call) that opens a
    subsegment sets a new tuple in its own copy of the context, so sibling
    tasks never see each other's subsegments.
    """

    def __init__(self, context_missing: str = "LOG_ERROR") -> None:
        super().__init__(context_missing)
        self._entities: ContextVar[tuple[Any, ...]] = ContextVar("xray_entities", default=())

    def put_segment(self, segment: Any) -> None:
        self._entities.set((segment,))

    def end_segment(self, end_time: float | None = None) -> None:
        entity = self.get_trace_entity()
        if not entity:
            return
        if self._is_subsegment(entity):
            entity.parent_segment.close(end_time)
        else:
            entity.close(end_time)

    def put_subsegment(self, subsegment: Any) -> None:
        entity = self.get_trace_entity()
        if not entity:
            return
        entity.add_subsegment(subsegment)
        self._entities.set((*self._entities.get(), subsegment))

    def end_subsegment(self, end_time: float | None = None) -> bool:
        entity = self.get_trace_entity()
        if self._is_subsegment(entity):
            entity.close(end_time)
            self._entities.set(self._entities.get()[:-1])
            return True
        return False

    def get_trace_entity(self) -> Any:
        entities = self._entities.get()
        if not entities:
            if not global_sdk_config.sdk_enabled():
                return DummySegment()
            return self.handle_context_missing()
        top = entities[-1]
        if isinstance(top, _Unsampled):
            dummy = DummySegment(top.name)
            dummy.trace_id = top.trace_id
            self._entities.set((dummy,))
            return dummy
        return top

    def set_trace_entity(self, trace_entity: Any) -> None:
        self._entities.set((trace_entity,))

    def clear_trace_entities(self) -> None:
        self._entities.set(())

    def has_entity(self) -> bool:
        """True inside a traced request, without the context-missing handling."""
        return bool(self._entities.get())

    def sampled(self) -> bool:
        """True inside a sampled request: there is something to record."""
        entities = self._entities.get()
        return bool(entities) and not isinstance(entities[-1], _Unsampled) and entities[-1].sampled

    def unsampled_trace_id(self) -> str | None:
        """The trace id of the current request if it is not sampled, else None."""
        entities = self._entities.get()
        if not entities:
            return None
        top = entities[-1]
        if isinstance(top, _Unsampled) or not top.sampled:
            return str(top.trace_id)
        return None

    def begin_unsampled(self, name: str, trace_id: str) -> Token[tuple[Any, ...]]:
        """Mark the current request unsampled; reset with the token when it ends."""
        return self._entities.set((_Unsampled(name, trace_id),))

    def end_unsampled(self, token: Token[tuple[Any, ...]]) -> None:
        self._entities.reset(token)


class OrjsonUDPEmitter(UDPEmitter):  # type: ignore[misc]
    """The SDK's UDP emitter: documents serialized with orjson, sent at the end of the loop's turn.

    Each segment is serialized when it ends (orjson, 3x faster than the
    SDK's ``json``; the SDK may change the entity afterwards) and sent, one
    datagram each as the daemon reads them, by a
    :class:`servicekit.turns.EndOfTurn`: inside a running event loop when
    the loop's current turn ends, back to back with the other segments that
    ended in it. In a test script a lone datagram to a reader asleep on
    another CPU cost the sender 60-80% more CPU than one to a port nobody
    reads, and datagrams sent back to back found it awake
    (docs/performance.md, round 9). Outside a running loop a segment is sent
    at once, after what waits; once 64 wait (a document can be up to 64 KB),
    they are sent at once; what waits at the interpreter's exit is sent
    then, and :func:`shutdown` sends it too. A process killed outright, or
    one that ends with ``os._exit``, loses the segments of its loop's last
    turn.

    It sends on the emitter's socket (the SDK's private ``_socket``: there is
    no public one) to its public ``ip`` and ``port``, read at each send.
    """

    _HEADER = b'{"format":"json","version":1}\n'
    _WAITING_MAX = 64

    def __init__(self, daemon_address: str = DEFAULT_DAEMON_ADDRESS) -> None:
        super().__init__(daemon_address)
        self._documents = EndOfTurn(self._send_each, cap=self._WAITING_MAX)

    def send_entity(self, entity: Any) -> None:
        try:
            document = self._HEADER + orjson.dumps(entity.to_dict(), default=str)
        except Exception:
            log.exception("Failed to send entity to the X-Ray daemon")
            return
        self._documents.add(document)

    def flush(self) -> None:
        """Send the segments waiting for the end of the loop's turn, in the order they ended."""
        self._documents.flush()

    def _send_each(self, documents: list[bytes]) -> None:
        address = (self.ip, self.port)
        for document in documents:
            try:
                self._socket.sendto(document, address)
            except Exception:
                log.exception("Failed to send entity to the X-Ray daemon")


def configure(settings: ServiceSettings) -> bool:
    """Configure the SDK's recorder from the settings; return True.

    Call it inside the running event loop (the FastAPI lifespan), once.
    """
    global_sdk_config.set_sdk_enabled(True)
    options: dict[str, Any] = {
        "service": settings.service_name,
        "context": ContextVarContext(settings.xray_context_missing),
        "context_missing": settings.xray_context_missing,
        "daemon_address": settings.xray_daemon_address,
        "emitter": OrjsonUDPEmitter(settings.xray_daemon_address),
        "sampling": True,
        "sampling_rules": str(settings.xray_sampling_rules),
        "plugins": ("ECSPlugin",) if settings.on_ecs else (),
    }
    sampler: StoppableSampler | RulesSampler
    if settings.xray_centralized_sampling:
        sampler = StoppableSampler()  # the rules file is its fallback
    else:
        sampler = RulesSampler(LocalRules.from_file(settings.xray_sampling_rules))
        del options["sampling_rules"]
    xray_recorder.configure(**options, sampler=sampler)
    share_runtime_context(xray_recorder)
    if isinstance(sampler, StoppableSampler):
        # The recorder hands the daemon's address only to a sampler whose class
        # is named DefaultSampler: the service's is given it here, as the
        # recorder would (the origin is the one ECSPlugin sets).
        origin = ECS_ORIGIN if settings.on_ecs else None
        sampler.load_settings(
            DaemonConfig(settings.xray_daemon_address), xray_recorder.context, origin
        )
    return True


def share_runtime_context(recorder: Any) -> None:
    """Give each new segment the recorder's ``aws`` block without the SDK's deep copy.

    The recorder's ``_populate_runtime_context`` (private: there is no public
    hook) deep-copies that block (the SDK's name and version, on ECS the
    plugin's container) into every segment it begins: about 5 µs of the 40 a
    sampled request and its call out cost the X-Ray path. A segment writes
    into one part of the block only, ``aws.xray.sampling_rule_name``
    (``Segment.set_rule_name``, under centralized sampling), so each segment
    gets its own top level and ``xray`` dictionary and shares the rest, which
    nothing writes. Origin, service and rule name are set as the SDK sets them,
    from the recorder's state at that moment, as the SDK reads it
    (``tests/servicekit/test_tracing.py`` holds the result equal to the SDK's).
    """

    def populate(segment: Any, sampling_decision: Any) -> None:
        if recorder._origin:
            segment.origin = recorder._origin
        metadata: dict[str, Any] = recorder._aws_metadata
        segment.set_aws({**metadata, "xray": dict(metadata.get("xray", {}))})
        segment.set_service(SERVICE_INFO)
        if isinstance(sampling_decision, str):
            segment.set_rule_name(sampling_decision)

    recorder._populate_runtime_context = populate


class RulesSampler:
    """The SDK's local sampler interface over :class:`servicekit.sampling_rules.LocalRules`.

    The same rules, semantics and code as the OpenTelemetry path, with the
    rule of a (host, method, path) remembered: a decision is a dictionary
    look-up and a reservoir check, not the SDK's wildcard match per rule per
    request (``tests/servicekit/test_sampling_rules.py`` checks the decisions
    equal the SDK's ``LocalSampler``'s).
    """

    def __init__(self, rules: LocalRules) -> None:
        self.rules = rules

    def should_trace(self, sampling_req: dict[str, Any] | None = None) -> bool:
        if not sampling_req:
            return self.rules.default_decision()
        return self.rules.should_trace(
            sampling_req.get("host"), sampling_req.get("method"), sampling_req.get("path")
        )

    def load_local_rules(self, rules: dict[str, Any]) -> None:
        """The rules are given to the constructor (the recorder is not given a file)."""

    def start(self) -> None:
        """Nothing to start: no poller."""


def _in_sampled_request() -> bool:
    context = xray_recorder.context
    return isinstance(context, ContextVarContext) and context.sampled()


class RequestTracer:
    """Traces each request in one X-Ray segment (:class:`servicekit.tracing.RequestTracer`)."""

    __slots__ = ("service", "trust_sampling", "trusted_proxies")

    def __init__(
        self, service: str, *, trust_sampling: bool = False, trusted_proxies: int = 1
    ) -> None:
        self.service = service
        self.trust_sampling = trust_sampling
        self.trusted_proxies = trusted_proxies

    def begin(self, scope: Scope) -> _SegmentTrace | _UnsampledTrace | None:
        context = xray_recorder.context
        if not global_sdk_config.sdk_enabled() or not isinstance(context, ContextVarContext):
            return None  # configure_tracing has not run
        incoming, host = incoming_trace(scope["headers"], trust_sampling=self.trust_sampling)
        decision = self.decide(incoming, host, scope["method"], scope["path"])
        if decision:
            return _SegmentTrace(self, scope, incoming, decision, host)
        # Unsampled requests keep a real trace id so that logs and the
        # propagated header still name the trace; nothing is recorded.
        trace_id = incoming.root or new_trace_id()
        return _UnsampledTrace(context, self.service, trace_id, incoming)

    def decide(self, incoming: TraceHeader, host: str, method: str, path: str) -> Any:
        """The sampling decision for a request, as the SDK's ``calculate_sampling_decision``.

        A trusted caller's ``Sampled=0|1``, else the sampler's: 1 or 0 from the
        local rules (asked directly, without the SDK helper's request dict), or
        from centralized rules the matched rule's name (sampled) or 0.
        """
        if incoming.sampled == 0 or incoming.sampled == 1:
            return incoming.sampled
        sampler = xray_recorder.sampler
        if isinstance(sampler, RulesSampler):
            return int(sampler.rules.should_trace(host, method, path))
        request = {"host": host, "method": method, "path": path, "service": self.service}
        return calculate_sampling_decision(incoming, xray_recorder, request)


class _UnsampledTrace:
    """An unsampled request: its trace id in the context, nothing recorded."""

    __slots__ = ("_context", "_entity_token", "_trace_token", "response_header")

    def __init__(
        self, context: ContextVarContext, service: str, trace_id: str, incoming: TraceHeader
    ) -> None:
        self.response_header = (
            TRACE_HEADER,
            trace_response_header(incoming, trace_id, sampled=False),
        )
        self._context = context
        self._entity_token = context.begin_unsampled(service, trace_id)
        self._trace_token = trace_id_var.set(trace_id)

    def responded(self, scope: Scope, status: int) -> None:
        """Nothing to record."""

    def failed(self, exc: BaseException) -> None:
        """Nothing to record."""

    def end(self) -> None:
        trace_id_var.reset(self._trace_token)
        self._context.end_unsampled(self._entity_token)


class _SegmentTrace:
    """A sampled request's segment: the request's facts, its status, its exception."""

    __slots__ = ("_segment", "_trace_token", "response_header")

    def __init__(
        self,
        tracer: RequestTracer,
        scope: Scope,
        incoming: TraceHeader,
        decision: Any,
        host: str,
    ) -> None:
        # A new trace's id made as the unsampled path makes it, not by the SDK
        # (whose TraceId reads os.urandom: a system call per segment).
        segment = xray_recorder.begin_segment(
            name=tracer.service,
            traceid=incoming.root or new_trace_id(),
            parent_id=incoming.parent,
            sampling=decision,
        )
        self._segment = segment
        self._trace_token = trace_id_var.set(segment.trace_id)
        client = client_facts(scope, tracer.trusted_proxies)
        segment.put_http_meta(http.METHOD, scope["method"])
        segment.put_http_meta(http.URL, request_url(scope, host))
        if client.user_agent:
            segment.put_http_meta(http.USER_AGENT, client.user_agent)
        if client.client_ip:
            segment.put_http_meta(http.CLIENT_IP, client.client_ip)
        if client.forwarded:
            segment.put_http_meta(http.X_FORWARDED_FOR, True)
        self.response_header = (
            TRACE_HEADER,
            trace_response_header(incoming, segment.trace_id, sampled=True),
        )

    def responded(self, scope: Scope, status: int) -> None:
        # The SDK sets the fault/error/throttle flags from the status here.
        self._segment.put_http_meta(http.STATUS, status)

    def failed(self, exc: BaseException) -> None:
        segment = self._segment
        segment.put_http_meta(http.STATUS, 500)
        segment.add_exception(exc, traceback.extract_tb(exc.__traceback__))

    def end(self) -> None:
        xray_recorder.end_segment()
        trace_id_var.reset(self._trace_token)
        _release_sent(self._segment)


def _release_sent(segment: Any) -> None:
    """Break the SDK's segment <-> subsegment reference cycle once the segment is sent.

    Nothing reads a sent segment's subsegments; without this they wait for the
    cyclic garbage collector. A segment still waiting for a subsegment to end
    (one left open by a background task) is left alone: it is sent later.
    """
    if segment.subsegments and not segment.in_progress and segment.ready_to_send():
        segment.subsegments = []


def trace_call(
    method: str, scheme: str, host: str, port: int | None, path: str, headers: dict[str, str]
) -> _CallSubsegment | None:
    """Start a ``remote`` subsegment for a call out (see :func:`servicekit.tracing.trace_call`).

    What the SDK's own HTTP client patches record (name = host, method, URL
    without credentials or query, status, fault/error, the exception), written
    for the hot path. An unsampled request only passes its trace id on
    (``Sampled=0``): no subsegment would be sent, so none is built.
    """
    context = xray_recorder.context
    if not isinstance(context, ContextVarContext) or not global_sdk_config.sdk_enabled():
        return None
    unsampled = context.unsampled_trace_id()
    if unsampled is not None:
        headers[CALL_TRACE_HEADER] = call_trace_header(unsampled, None)
        return None
    if not context.has_entity():
        return None
    subsegment = xray_recorder.begin_subsegment(host, "remote")
    subsegment.put_http_meta(http.METHOD, method)
    subsegment.put_http_meta(http.URL, call_url(scheme, host, port, path))
    headers[CALL_TRACE_HEADER] = call_trace_header(subsegment.trace_id, subsegment.id)
    return _CallSubsegment(subsegment)


class _CallSubsegment:
    """A call's subsegment until the call is over (:class:`servicekit.tracing.CallTrace`)."""

    __slots__ = ("_subsegment",)

    def __init__(self, subsegment: Any) -> None:
        self._subsegment = subsegment

    def answered(self, status: int) -> None:
        self._subsegment.put_http_meta(http.STATUS, status)  # and the flags

    def failed(self, exc: BaseException) -> None:
        self._subsegment.add_exception(exc, traceback.extract_tb(exc.__traceback__))

    def end(self) -> None:
        xray_recorder.end_subsegment()


def instrument_sqlalchemy(engine: AsyncEngine) -> None:
    """Record every SQL statement the engine runs inside a sampled request as a subsegment."""
    if not global_sdk_config.sdk_enabled():
        return
    from sqlalchemy import event  # noqa: PLC0415 - only the backend has SQLAlchemy

    url = engine.url
    name = f"{url.database or url.get_backend_name()}@{url.host or 'local'}"
    sql_meta = {
        "url": url.render_as_string(hide_password=True),
        "database_type": url.get_backend_name(),
        "driver_version": url.get_driver_name(),
    }
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _begin(*args: Any) -> None:
        if not _in_sampled_request():
            return
        subsegment = xray_recorder.begin_subsegment(name, namespace="remote")
        if subsegment is not None:
            subsegment.set_sql({**sql_meta, "sanitized_query": args[2]})

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _end(*_: Any) -> None:
        if _in_sampled_request():
            xray_recorder.end_subsegment()

    @event.listens_for(sync_engine, "handle_error")
    def _error(context: Any) -> None:
        if not _in_sampled_request():
            return
        entity = xray_recorder.current_subsegment()
        if entity is not None:
            exc = context.original_exception
            entity.add_exception(exc, traceback.extract_tb(exc.__traceback__))
            xray_recorder.end_subsegment()


def shutdown() -> None:
    """Send the segments still waiting for the end of the loop's turn; stop the pollers.

    The pollers are the centralized sampler's, when it is the one configured.
    """
    emitter = xray_recorder.emitter
    if isinstance(emitter, OrjsonUDPEmitter):
        emitter.flush()
    sampler = xray_recorder.sampler
    if isinstance(sampler, StoppableSampler):
        sampler.stop()
