"""Centralized X-Ray sampling for the OpenTelemetry path (``XRAY_CENTRALIZED_SAMPLING=true``).

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
from typing import TYPE_CHECKING

from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.daemon_config import DaemonConfig
from aws_xray_sdk.core.sampling.sampler import DefaultSampler

from servicekit.identity import on_ecs

if TYPE_CHECKING:
    from servicekit.settings import ServiceSettings

ECS_ORIGIN = "AWS::ECS::Container"
"""The service type X-Ray rules match on ECS (the X-Ray path's ``ECSPlugin`` sets it)."""


class CentralizedRules:
    """Sampling decisions from X-Ray's centralized rules, with the local file as fallback.

    The same interface as :class:`servicekit.sampling_rules.LocalRules`
    (``should_trace``, ``default_decision``); safe to call from any thread.
    The pollers start at the first decision.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self._service = settings.service_name
        self._sampler = DefaultSampler()
        self._sampler.load_local_rules(
            json.loads(settings.xray_sampling_rules.read_text(encoding="utf-8"))
        )
        origin = ECS_ORIGIN if on_ecs() else None
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
