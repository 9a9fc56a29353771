"""Centralized X-Ray sampling (``XRAY_CENTRALIZED_SAMPLING=true``), on both tracing paths.

:class:`StoppableSampler` is the X-Ray SDK's centralized sampler whose two
poller threads end when the service shuts down (the SDK's own run until the
process exits, with no way to stop them); the X-Ray path configures the
recorder with it, and :class:`CentralizedRules` wraps it for the OpenTelemetry
path.

The pollers are the SDK's, driven by this module's loops: they use the SDK's
private poller state (``RulePoller._refresh_cache``, ``_reset_time_to_wait``,
``_time_elapsed``, ``_time_to_wait``; ``TargetPoller._do_work``,
``_get_jitter``, ``_interval``; ``DefaultSampler._lock``, ``_started``,
``_rule_poller``, ``_target_poller``). ``aws-xray-sdk`` is bounded below its
next minor release in ``servicekit/pyproject.toml``, and
``tests/servicekit/test_private_hooks.py`` names each of these hooks when an
upgrade removes it.

On the OpenTelemetry path:

The rules set in the X-Ray console decide, as on the X-Ray SDK path: the
rules and the per-rule targets (reservoir quota, rate) are polled from X-Ray
through ``AWS_XRAY_DAEMON_ADDRESS``, which on this path is the ADOT
collector's ``awsproxy`` extension (TCP 2000, the address the X-Ray daemon
answers on the other path; the collector signs the calls with the task role).
Until the first rules arrive, and for a request no rule matches, the local
rules file decides.

The polling and the rule/target arithmetic are the X-Ray SDK's own
(``DefaultSampler``: rule poller every 5 minutes, target poller every 10
seconds, reservoir borrowing), loaded only in this configuration: the
OpenTelemetry SDK has no X-Ray remote sampler of its own, and the AWS
distribution's one (``aws-opentelemetry-distro``) pins an older
OpenTelemetry and some fifty instrumentation packages. Without centralized
sampling the OpenTelemetry path imports nothing of the X-Ray SDK.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.daemon_config import DaemonConfig
from aws_xray_sdk.core.sampling.sampler import DefaultSampler

from servicekit.logs import get_logger

if TYPE_CHECKING:
    from servicekit.settings import ServiceSettings

ECS_ORIGIN = "AWS::ECS::Container"
"""The service type X-Ray rules match on ECS (the X-Ray path's ``ECSPlugin`` sets it)."""

log = get_logger("servicekit.sampling")

_RULE_POLL_STEP_SECONDS = 1  # the SDK's rule poller counts its wait in 1-second steps
STOP_TIMEOUT_SECONDS = 2.0


class StoppableSampler(DefaultSampler):  # type: ignore[misc]
    """The SDK's ``DefaultSampler`` whose poller threads end on :meth:`stop`.

    Same rules, targets, intervals and jitter as the SDK's pollers (rules
    every 5 minutes, targets every 10 seconds); only the loops are this
    class's, waiting on an event instead of sleeping, so :meth:`stop` ends
    both within a second. The pollers start at the first decision, as the SDK's.
    """

    _started: bool  # the SDK's flag: pollers running

    def __init__(self) -> None:
        super().__init__()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if not global_sdk_config.sdk_enabled():
            return
        with self._lock:
            if self._started or self._stopping.is_set():
                return
            self._threads = [
                threading.Thread(target=self._poll_rules, name="xray-rule-poller", daemon=True),
                threading.Thread(target=self._poll_targets, name="xray-target-poller", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._started = True

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """End both pollers (a poll in progress finishes first, within ``timeout``)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("sampling poller still running at shutdown", thread=thread.name)

    def _poll_rules(self) -> None:
        poller = self._rule_poller
        while not self._stopping.is_set():
            if poller._time_elapsed >= poller._time_to_wait:
                poller._refresh_cache()  # logs its own failures
                poller._time_elapsed = 0
                poller._reset_time_to_wait()
            elif not self._stopping.wait(_RULE_POLL_STEP_SECONDS):
                poller._time_elapsed += _RULE_POLL_STEP_SECONDS

    def _poll_targets(self) -> None:
        poller = self._target_poller
        while not self._stopping.wait(poller._interval + poller._get_jitter()):
            try:
                poller._do_work()
            except Exception:
                log.exception("sampling targets poll failed")


class CentralizedRules:
    """Sampling decisions from X-Ray's centralized rules, with the local file as fallback.

    The same interface as :class:`servicekit.sampling_rules.LocalRules`
    (``should_trace``, ``default_decision``); safe to call from any thread.
    The pollers start at the first decision.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self._service = settings.service_name
        self._sampler = StoppableSampler()
        self._sampler.load_local_rules(
            json.loads(settings.xray_sampling_rules.read_text(encoding="utf-8"))
        )
        origin = ECS_ORIGIN if settings.on_ecs else None
        # The pollers' calls run outside any request: the SDK's thread-local
        # context gives them the placeholder segment the SDK expects.
        self._sampler.load_settings(DaemonConfig(settings.xray_daemon_address), Context(), origin)

    def should_trace(self, host: str | None, method: str | None, path: str | None) -> bool:
        """Whether to trace a new request with these facts (counts toward X-Ray's targets)."""
        request = {"host": host, "method": method, "path": path, "service": self._service}
        return bool(self._sampler.should_trace(request))

    def default_decision(self) -> bool:
        """Whether to trace work that is not a request (the rules matching this service)."""
        return bool(self._sampler.should_trace({"service": self._service}))

    def stop(self) -> None:
        """End the pollers (at shutdown)."""
        self._sampler.stop()
