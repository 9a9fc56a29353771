"""AWS rules moto does not enforce, checked on the templates with the page that states each.

Which principal writes ALB access logs in each Region, the GuardDuty agent's
repository, Lambda's unreserved concurrency floor, keys that outlive the data
they encrypt, and environment names.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import botocore.session
import pytest

from sbcntrctl.infra.stacks import ENV_NAME_PATTERN, STACKS, env_name
from tests.infra.cfn import resources, template
from tests.infra.test_drift import allows

# Elastic Load Balancing User Guide for Application Load Balancers, "Enable access logs
# for your Application Load Balancer", step 2 "Attach a policy to your S3 bucket":
# Regions available before August 2022 grant the Region's Elastic Load Balancing
# account; every Region opened since grants logdelivery.elasticloadbalancing.amazonaws.com.
ELB_ACCOUNTS_BEFORE_AUGUST_2022 = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
ELB_SERVICE_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"


def condition(tpl: dict[str, Any], value: Any, names: dict[str, str]) -> bool:
    """Evaluate a template condition (Fn::Or, Fn::And, Fn::Not, Fn::Equals, Condition)."""
    if isinstance(value, str):
        return condition(tpl, tpl["Conditions"][value], names)
    ((function, argument),) = value.items()
    if function == "Condition":
        return condition(tpl, tpl["Conditions"][argument], names)
    if function == "Fn::Or":
        return any(condition(tpl, a, names) for a in argument)
    if function == "Fn::And":
        return all(condition(tpl, a, names) for a in argument)
    if function == "Fn::Not":
        return not condition(tpl, argument[0], names)
    if function == "Fn::Equals":
        left, right = (names[a["Ref"]] if isinstance(a, dict) else str(a) for a in argument)
        return bool(left == right)
    raise AssertionError(function)


def alb_log_principal(platform: dict[str, Any], region: str) -> dict[str, str]:
    """The principal the log bucket's AlbAccessLogs statement grants in ``region``."""
    (policy,) = resources(platform, "AWS::S3::BucketPolicy").values()
    (statement,) = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Sid"] == "AlbAccessLogs"
    ]
    principal = statement["Principal"]
    if "Fn::If" in principal:
        name, when_true, when_false = principal["Fn::If"]
        principal = when_true if condition(platform, name, {"AWS::Region": region}) else when_false
    if "AWS" in principal:
        arn, names = principal["AWS"]["Fn::Sub"]
        table, _, key = names["ElbAccount"]["Fn::FindInMap"]
        account = platform["Mappings"][table][region][key]  # KeyError: no account there
        return {"AWS": arn.replace("${AWS::Partition}", "aws").replace("${ElbAccount}", account)}
    return dict(principal)


def test_alb_access_logs_can_be_written_in_every_region() -> None:
    """Every Region ELB runs in (botocore's endpoint data) gets the principal AWS documents."""
    platform = template("platform")
    regions = botocore.session.get_session().get_available_regions("elbv2")
    assert len(regions) > len(ELB_ACCOUNTS_BEFORE_AUGUST_2022)  # newer Regions are listed
    for region in regions:
        expected = (
            {"AWS": f"arn:aws:iam::{ELB_ACCOUNTS_BEFORE_AUGUST_2022[region]}:root"}
            if region in ELB_ACCOUNTS_BEFORE_AUGUST_2022
            else {"Service": ELB_SERVICE_PRINCIPAL}
        )
        assert alb_log_principal(platform, region) == expected, region
    assert {r: v["Account"] for r, v in platform["Mappings"]["ElbLogDelivery"].items()} == (
        ELB_ACCOUNTS_BEFORE_AUGUST_2022
    )


def test_the_region_check_sees_a_region_without_a_principal() -> None:
    platform = template("platform")
    for conditions in ("ElbAccountRegions1", "ElbAccountRegions2", "ElbAccountRegions3"):
        platform["Conditions"][conditions]["Fn::Or"].append(
            {"Fn::Equals": [{"Ref": "AWS::Region"}, "ap-southeast-5"]}
        )
    with pytest.raises(KeyError, match="ap-southeast-5"):
        alb_log_principal(platform, "ap-southeast-5")


# GuardDuty User Guide, "ECR repository for GuardDuty agent on AWS Fargate (Amazon ECS
# only)": one repository per Region, each in a GuardDuty account, always this name.
GUARDDUTY_AGENT_REPOSITORIES = (
    "arn:aws:ecr:us-west-2:733349766148:repository/aws-guardduty-agent-fargate",
    "arn:aws:ecr:eu-west-3:665651866788:repository/aws-guardduty-agent-fargate",
    "arn:aws:ecr:ap-south-1:251508486986:repository/aws-guardduty-agent-fargate",
)


@pytest.mark.parametrize("repository", GUARDDUTY_AGENT_REPOSITORIES)
def test_with_guardduty_the_execution_roles_may_pull_its_agent(repository: str) -> None:
    """GuardDuty User Guide, "Prerequisites for AWS Fargate (Amazon ECS only) support":
    the task execution role pulls the agent (ecr:BatchCheckLayerAvailability,
    GetDownloadUrlForLayer, BatchGetImage, and GetAuthorizationToken, which the roles have)."""
    platform = template("platform")
    region = repository.split(":")[3]
    policies = [
        p
        for p in resources(platform, "AWS::IAM::ManagedPolicy").values()
        if p.get("Condition") == "WithGuardDuty"
    ]
    assert len(policies) == 1
    props = policies[0]["Properties"]
    assert props["Roles"] == [{"Ref": "FrontendExecutionRole"}, {"Ref": "BackendExecutionRole"}]
    document = props["PolicyDocument"]
    for statement in document["Statement"]:
        statement["Resource"] = (
            statement["Resource"]["Fn::Sub"]
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::Region}", region)
        )
    for action in ("BatchCheckLayerAvailability", "GetDownloadUrlForLayer", "BatchGetImage"):
        assert allows(document, f"ecr:{action}", repository), action
        assert not allows(document, f"ecr:{action}", repository.replace("guardduty", "other"))
    assert platform["Parameters"]["GuardDutyRuntimeMonitoring"]["Default"] == "false"


def test_the_error_notifier_reserves_no_concurrency_by_default() -> None:
    """Lambda Developer Guide, "Configuring reserved concurrency for a function": the
    account keeps at least 10 unreserved executions (100 once the quota is raised); a new
    account's quota is 10, so any reservation fails its stack."""
    monitoring = template("monitoring")
    function = monitoring["Resources"]["NotifierFunction"]["Properties"]
    reserved = function["ReservedConcurrentExecutions"]
    name, when_true, when_false = reserved["Fn::If"]
    parameter = monitoring["Parameters"]["NotifierReservedConcurrency"]
    default = {"NotifierReservedConcurrency": parameter["Default"]}
    assert not condition(monitoring, name, default)
    assert when_false == {"Ref": "AWS::NoValue"}
    assert when_true == {"Ref": "NotifierReservedConcurrency"}
    assert condition(monitoring, name, {"NotifierReservedConcurrency": "2"})


def key_of(kms_key_id: Any, templates: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(template, logical id) of the key a KmsKeyId names (GetAtt, Ref or an export)."""
    if "Fn::ImportValue" in kms_key_id:
        export = kms_key_id["Fn::ImportValue"]["Fn::Sub"].removeprefix("sbcntr-${EnvName}-")
        for key, tpl in templates.items():
            output = tpl.get("Outputs", {}).get(export)
            if output:
                return key_of(output["Value"], {key: tpl})
        raise AssertionError(export)
    (key,) = templates
    if "Fn::GetAtt" in kms_key_id:
        return key, kms_key_id["Fn::GetAtt"][0]
    return key, kms_key_id["Ref"]


def unreadable_after_delete(templates: dict[str, dict[str, Any]]) -> list[str]:
    """Retained resources whose KMS key a stack deletion removes."""
    found = []
    for key, tpl in templates.items():
        for logical_id, resource in tpl["Resources"].items():
            kms = resource.get("Properties", {}).get("KmsKeyId")
            if resource.get("DeletionPolicy") != "Retain" or kms is None:
                continue
            holder, key_id = key_of(kms, {key: tpl} if "Fn::ImportValue" not in kms else templates)
            if templates[holder]["Resources"][key_id].get("DeletionPolicy") != "Retain":
                found.append(f"{key}.{logical_id} -> {holder}.{key_id}")
    return found


def test_kept_data_keeps_its_key() -> None:
    """AWS KMS Developer Guide, "Deleting AWS KMS keys": after the waiting period the key
    and everything encrypted under it is unrecoverable. Retained log groups and the
    retained secret would be unreadable: their keys are retained too."""
    templates = {s.key: template(s.key) for s in STACKS}
    assert unreadable_after_delete(templates) == []
    del templates["platform"]["Resources"]["SecretsKey"]["DeletionPolicy"]
    assert unreadable_after_delete(templates) == ["platform.DatabaseSecret -> platform.SecretsKey"]


@pytest.mark.parametrize("stack", [s.key for s in STACKS if s.key not in ("ci", "registry")])
def test_any_environment_name_of_the_pattern_is_accepted(stack: str) -> None:
    parameter = template(stack)["Parameters"]["EnvName"]
    assert "AllowedValues" not in parameter
    assert parameter["AllowedPattern"] == ENV_NAME_PATTERN


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        *[(name, True) for name in ("qa", "dev", "prod2", "abcdefgh")],
        *[(name, False) for name in ("d", "abcdefghi", "Dev", "2qa", "q-a", "")],
    ],
)
def test_environment_names_follow_one_pattern(name: str, ok: bool) -> None:
    """Names go into S3 bucket names (lowercase, S3 User Guide "General purpose bucket
    naming rules") and ALB and target group names (32 characters at most, no
    underscores; Elastic Load Balancing API, CreateLoadBalancer Name)."""
    assert bool(re.fullmatch(ENV_NAME_PATTERN.strip("^$"), name)) == ok
    if ok:
        assert env_name(name) == name
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="2-8 lowercase letters"):
            env_name(name)
