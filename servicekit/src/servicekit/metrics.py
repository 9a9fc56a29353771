"""Application metrics in CloudWatch Embedded Metric Format (EMF), aggregated in process.

Each request adds to a per-route aggregate (a few dictionary and integer
operations, no allocation once the route is known); once a minute, and once
more at shutdown after the drain, :class:`Metrics` writes one JSON line per
route on stdout. CloudWatch Logs extracts the metrics from those lines when
the log router sends them with the ``json/emf`` log format (firelens/). No
line is written per request.

A line, beside the fields every log line has (docs/log-schema.md)::

    {"_aws": {"Timestamp": ..., "CloudWatchMetrics": [{"Namespace": "sbcntr/dev",
        "Dimensions": [["Service", "Route"], ["Service"]],
        "Metrics": [{"Name": "Requests", "Unit": "Count"}, ...]}]},
     "Service": "frontend", "Route": "GET /items/{item_id}",
     "Requests": 120, "Status2xx": 118, "Status4xx": 2, "Status5xx": 0,
     "Latency": {"Values": [...], "Counts": [...], "Max": ..., "Min": ...,
                 "Count": 120, "Sum": ...}}

Dimensions stay small: the service and the route *template* (never a raw path;
unmatched requests are one route per method, ``GET (unmatched)``; a method no
route serves, and every 405, is the one route ``(other method)`` whatever the
client sent; requests the edge refused before the application saw them are
``(refused)``), and the service alone (service-wide percentiles for alarms).
Latency is a distribution of values and counts, the form CloudWatch takes for
percentiles (the same form the OpenTelemetry collector's ``awsemfexporter``
writes): each value is the centre of a logarithmic bucket 4% wide, so any
percentile read back is within 2% of the measured one. At most 100 values per
line (EMF's limit); a wider distribution continues on further lines that carry
only the latency.

The frontend also records its backend calls per operation (``BackendCalls``,
``BackendErrors``, ``BackendLatency`` with dimensions ``Service, Operation``).

The official ``aws-embedded-metrics`` library writes one document per
``flush`` of a per-unit-of-work logger and keeps raw values (at most 100 per
line, no counts): it would write a line per request, or need this aggregation
built on top of it; so this module writes EMF itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from servicekit.logs import get_logger, write_record

EMF_MAX_VALUES = 100
BUCKET_GROWTH = 1.04  # each bucket 4% wider than the last: +-2% around its centre
_LOG_GROWTH = math.log(BUCKET_GROWTH)

log = get_logger("servicekit.metrics")
_SMALLEST_MS = 0.001  # below a microsecond, latencies share one bucket
UNMATCHED_ROUTE = "(unmatched)"
OTHER_METHOD_ROUTE = "(other method)"
# The methods routes may serve; any other a client sends is counted as one.
ROUTABLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Distribution:
    """Latencies in logarithmic buckets, with exact count, sum, min and max."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = 0.0

    def add(self, value_ms: float) -> None:
        index = (
            int(math.log(value_ms / _SMALLEST_MS) / _LOG_GROWTH) if value_ms > _SMALLEST_MS else 0
        )
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self.total += value_ms
        self.low = min(self.low, value_ms)
        self.high = max(self.high, value_ms)

    @staticmethod
    def centre(index: int) -> float:
        """The value that stands for bucket ``index`` (its geometric centre)."""
        return round(_SMALLEST_MS * math.pow(BUCKET_GROWTH, index + 0.5), 3)

    def emf_values(self) -> Iterator[dict[str, Any]]:
        """EMF Values/Counts objects of at most 100 values each, lowest values first."""
        indexes = sorted(self.buckets)
        for start in range(0, len(indexes), EMF_MAX_VALUES):
            part = indexes[start : start + EMF_MAX_VALUES]
            counts = [self.buckets[i] for i in part]
            yield {
                "Values": [self.centre(i) for i in part],
                "Counts": counts,
                "Max": round(self.high, 3),
                "Min": round(self.low, 3),
                "Count": sum(counts),
                "Sum": round(self.total * sum(counts) / self.count, 3),
            }


@dataclass
class _RouteStats:
    requests: int = 0
    # status classes 0..5 (index = status // 100)
    classes: list[int] = field(default_factory=lambda: [0] * 6)
    latency: Distribution = field(default_factory=Distribution)


@dataclass
class _CallStats:
    calls: int = 0
    errors: int = 0
    latency: Distribution = field(default_factory=Distribution)


class Metrics:
    """The per-process aggregates of one service, and their EMF lines."""

    def __init__(self, service: str, namespace: str, interval_seconds: float = 60) -> None:
        self.service = service
        self.namespace = namespace
        self.interval_seconds = interval_seconds
        self._routes: dict[tuple[str, str], _RouteStats] = {}
        self._calls: dict[str, _CallStats] = {}
        self._task: asyncio.Task[None] | None = None

    # --- recording (hot path)

    def record_request(self, method: str, route: str, status: int, duration_ms: float) -> None:
        """One request; ``route`` is the route template (never a raw path).

        The method is the client's choice: one that no route serves, and any
        405, is counted under :data:`OTHER_METHOD_ROUTE`, so that clients
        cannot add series (each a billed CloudWatch metric). An empty
        ``method`` records ``route`` alone (the edge's :data:`servicekit.edge.REFUSED_ROUTE`).
        """
        if method and (status == 405 or method not in ROUTABLE_METHODS):
            method, route = "", OTHER_METHOD_ROUTE
        key = (method, route)
        stats = self._routes.get(key)
        if stats is None:
            stats = self._routes[key] = _RouteStats()
        stats.requests += 1
        stats.classes[min(status // 100, 5)] += 1
        stats.latency.add(duration_ms)

    def record_call(self, operation: str, ok: bool, duration_ms: float) -> None:
        """One call to another service: ``operation`` names it (``GET /v1/items``)."""
        stats = self._calls.get(operation)
        if stats is None:
            stats = self._calls[operation] = _CallStats()
        stats.calls += 1
        if not ok:
            stats.errors += 1
        stats.latency.add(duration_ms)

    # --- emitting

    def documents(self, timestamp_ms: int | None = None) -> list[dict[str, Any]]:
        """The EMF documents of everything recorded since the last call; resets the aggregates."""
        timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        routes, self._routes = self._routes, {}
        calls, self._calls = self._calls, {}
        documents = []
        for (method, route), stats in sorted(routes.items()):
            dims = {"Service": self.service, "Route": f"{method} {route}" if method else route}
            counts = {
                "Requests": stats.requests,
                "Status2xx": stats.classes[2],
                "Status4xx": stats.classes[4],
                "Status5xx": stats.classes[5],
            }
            documents += self._documents(
                timestamp_ms,
                dims,
                [["Service", "Route"], ["Service"]],
                counts,
                "Latency",
                stats.latency,
            )
        for operation, call in sorted(calls.items()):
            dims = {"Service": self.service, "Operation": operation}
            counts = {"BackendCalls": call.calls, "BackendErrors": call.errors}
            documents += self._documents(
                timestamp_ms,
                dims,
                [["Service", "Operation"]],
                counts,
                "BackendLatency",
                call.latency,
            )
        return documents

    def _documents(
        self,
        timestamp_ms: int,
        dimensions: dict[str, str],
        dimension_sets: list[list[str]],
        counts: dict[str, int],
        latency_name: str,
        latency: Distribution,
    ) -> list[dict[str, Any]]:
        documents = []
        for number, values in enumerate(latency.emf_values()):
            metrics = [{"Name": latency_name, "Unit": "Milliseconds"}]
            document: dict[str, Any] = {**dimensions, latency_name: values}
            if number == 0:  # the counts once; further lines carry only the rest of the latency
                metrics = [{"Name": name, "Unit": "Count"} for name in counts] + metrics
                document.update(counts)
            directive = {
                "Namespace": self.namespace,
                "Dimensions": dimension_sets,
                "Metrics": metrics,
            }
            document["_aws"] = {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]}
            documents.append(document)
        return documents

    def flush(self) -> int:
        """Write the documents as log lines (``logger`` = ``servicekit.metrics``); how many."""
        documents = self.documents()
        for document in documents:
            write_record("servicekit.metrics", "metrics", "info", document)
        return len(documents)

    # --- the periodic writer

    def start(self) -> None:
        """Flush every ``interval_seconds`` from a task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="emf-metrics")

    async def stop(self) -> None:
        """Stop the periodic writer and flush what is left (called after the drain).

        Never raises: a failed flush is one ``error`` line, so the shutdown
        steps after this one still run.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._flush_logged()

    async def _run(self) -> None:
        # A failed flush is logged and the next interval tries again: the
        # writer lives as long as the service.
        while True:
            await asyncio.sleep(self.interval_seconds)
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("metrics flush failed")
