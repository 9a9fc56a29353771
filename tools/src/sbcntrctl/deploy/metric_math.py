"""The request-count scaling policy of scaling.json: metric math over the service's target groups.

A blue/green or canary deployment moves the service between two target groups
(the primary and the alternate, edge.yml), so a predefined
``ALBRequestCountPerTarget`` metric, which names one target group, would count
the idle one half of the time. The policy's ``CustomizedMetricSpecification``
computes requests per healthy target over every target group of the service
instead: ``RequestCount`` (Sum) over ``HealthyHostCount`` (Average), both of
``AWS/ApplicationELB`` with the ``LoadBalancer`` and ``TargetGroup`` dimensions.

The rules AWS applies when the policy is put, which the API model does not
hold (Application Auto Scaling API Reference, CustomizedMetricSpecification and
TargetTrackingMetricDataQuery; Application Auto Scaling User Guide, "Create a
target tracking scaling policy for Application Auto Scaling using metric
math"): ``Metrics`` replaces the single-metric fields; each query has a unique
``Id`` (letters, digits, underscores, starting with a lowercase letter) and
either an ``Expression`` or a ``MetricStat``, not both; with an expression,
exactly one query, the final expression, has ``ReturnData`` true and every
other one false; an expression names only the ids of other queries. Amazon
CloudWatch User Guide, "Application Load Balancer metrics": ``RequestCount``
is useful as Sum, ``HealthyHostCount`` as Average, Minimum or Maximum.
"""

from __future__ import annotations

import re
from typing import Any

from sbcntrctl.deploy.verify import Problem

NAMESPACE = "AWS/ApplicationELB"
STATISTICS = {"RequestCount": {"Sum"}, "HealthyHostCount": {"Average", "Minimum", "Maximum"}}
SINGLE_METRIC = ("MetricName", "Namespace", "Dimensions", "Statistic", "Unit")
_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")
# In an expression, a query id (lowercase first) not followed by "(" (functions are
# uppercase: FILL, SUM...).
_REFERENCE = re.compile(r"\b([a-z][A-Za-z0-9_]*)\b(?!\s*\()")
LOAD_BALANCER = re.compile(r"^app/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")
TARGET_GROUP = re.compile(r"^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")


def problems(config: dict[str, Any], sd: dict[str, Any]) -> list[Problem]:
    """What each customized target tracking metric of ``config`` breaks, and whether
    the request-count one counts exactly the target groups of ``sd`` (its
    ``targetGroupArn`` and, for blue/green, the ``alternateTargetGroupArn``)."""
    found: list[Problem] = []
    for policy in config.get("policies", []):
        name = policy.get("PolicyName", "?")
        spec = policy.get("TargetTrackingScalingPolicyConfiguration", {})
        metric = spec.get("CustomizedMetricSpecification")
        if not isinstance(metric, dict) or "Metrics" not in metric:
            continue
        where = f"policies[{name}].CustomizedMetricSpecification"
        found += _queries(where, metric)
        counted = _counted(metric.get("Metrics", []))
        if counted:
            found += _follows(where, counted, service_target_groups(sd))
            found += _target_value(name, spec.get("TargetValue"))
    return found


def service_target_groups(sd: dict[str, Any]) -> set[str]:
    """``targetgroup/<name>/<id>`` of every target group the service may serve from."""
    arns = []
    for lb in sd.get("loadBalancers", []):
        arns.append(lb.get("targetGroupArn"))
        arns.append(lb.get("advancedConfiguration", {}).get("alternateTargetGroupArn"))
    return {arn.split(":")[-1] for arn in arns if isinstance(arn, str) and arn}


def _queries(where: str, metric: dict[str, Any]) -> list[Problem]:
    found = [
        Problem(f"{where}.{key}", "not with Metrics: each query names its metric")
        for key in SINGLE_METRIC
        if key in metric
    ]
    queries = metric.get("Metrics", [])
    ids = [q.get("Id", "") for q in queries]
    for i, query in enumerate(queries):
        at = f"{where}.Metrics[{query.get('Id') or i}]"
        if not _ID.match(query.get("Id", "")):
            found.append(Problem(at, "Id: letters, digits and _, starting with a lowercase letter"))
        elif ids.count(query["Id"]) > 1:
            found.append(Problem(at, "Id is not unique"))
        if ("Expression" in query) == ("MetricStat" in query):
            found.append(Problem(at, "either Expression or MetricStat, not both"))
        if "Expression" in query:
            unknown = sorted(
                {r for r in _REFERENCE.findall(query["Expression"]) if r not in ids}
                | ({query["Id"]} & set(_REFERENCE.findall(query["Expression"])))
            )
            if unknown:
                found.append(
                    Problem(f"{at}.Expression", f"names {', '.join(unknown)}: no such other query")
                )
        if "MetricStat" in query:
            found += _metric_stat(at, query["MetricStat"])
    expressions = [q for q in queries if "Expression" in q]
    returned = [q for q in queries if q.get("ReturnData", True) is not False]
    if expressions and (len(returned) != 1 or "Expression" not in returned[0]):
        found.append(
            Problem(
                f"{where}.Metrics",
                "ReturnData true on the final expression only, false on every other query "
                f"(true now on: {', '.join(q.get('Id', '?') for q in returned) or 'none'})",
            )
        )
    return found


def _metric_stat(at: str, stat: dict[str, Any]) -> list[Problem]:
    metric = stat.get("Metric", {})
    name = metric.get("MetricName")
    if metric.get("Namespace") != NAMESPACE or name not in STATISTICS:
        return []
    found = []
    if stat.get("Stat") not in STATISTICS[name]:
        allowed = " or ".join(sorted(STATISTICS[name]))
        found.append(Problem(f"{at}.MetricStat.Stat", f"{name} is counted with {allowed}"))
    dimensions = {d.get("Name"): d.get("Value", "") for d in metric.get("Dimensions", [])}
    if not LOAD_BALANCER.match(str(dimensions.get("LoadBalancer"))):
        found.append(
            Problem(
                f"{at}.MetricStat.Metric.Dimensions",
                f"LoadBalancer {dimensions.get('LoadBalancer')!r} is not app/<name>/<id> "
                "(the end of the load balancer's ARN: *_ALB_FULL_NAME)",
            )
        )
    if not TARGET_GROUP.match(str(dimensions.get("TargetGroup"))):
        found.append(
            Problem(
                f"{at}.MetricStat.Metric.Dimensions",
                f"TargetGroup {dimensions.get('TargetGroup')!r} is not targetgroup/<name>/<id> "
                "(the end of the target group's ARN: *_TARGET_GROUP_FULL_NAME)",
            )
        )
    return found


def _counted(queries: list[dict[str, Any]]) -> dict[str, set[str]]:
    """ALB metric name -> the target groups the queries read it for."""
    counted: dict[str, set[str]] = {}
    for query in queries:
        metric = query.get("MetricStat", {}).get("Metric", {})
        if metric.get("Namespace") != NAMESPACE or metric.get("MetricName") not in STATISTICS:
            continue
        for dimension in metric.get("Dimensions", []):
            if dimension.get("Name") == "TargetGroup":
                counted.setdefault(metric["MetricName"], set()).add(dimension.get("Value", ""))
    return counted


def _follows(where: str, counted: dict[str, set[str]], groups: set[str]) -> list[Problem]:
    found = []
    for name in STATISTICS:
        groups_counted = counted.get(name, set())
        if groups_counted != groups:
            found.append(
                Problem(
                    f"{where}.Metrics",
                    f"{name} of {', '.join(sorted(groups_counted)) or 'no target group'}, "
                    f"not of the service's target groups ({', '.join(sorted(groups)) or 'none'}): "
                    "requests per target must count every target group the service serves from",
                )
            )
    return found


def _target_value(name: str, target: Any) -> list[Problem]:
    if isinstance(target, int | float) and target < 1:
        return [
            Problem(
                f"policies[{name}].TargetValue",
                f"{target:g} requests per target (REQUESTS_PER_TARGET): at least 1 "
                "(whole requests per target per minute)",
            )
        ]
    return []
