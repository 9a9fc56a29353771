"""The stacks deploy on a moto server, through the real `sbcntrctl` commands.

In order: `infra deploy` creates the five stacks through change sets, `infra
outputs` writes the variables, `deploy deploy` runs both services with them
(one from the file, one straight from the stacks), `maintenance on|off|status`
flips the listener rule and reads it back, the stack parameter does the same,
and `infra delete` removes the environment. What moto cannot create is listed
in infra/README.md with how it is checked instead.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from sbcntrctl.deploy import template, traffic_shift
from sbcntrctl.infra import envfile
from sbcntrctl.infra.stacks import DERIVED, FOR_CHECKS, FROM_OUTPUTS, STACKS
from sbcntrctl.release.images import DEPLOYED, IMAGES
from tests.infra.emulator import moto_server
from tests.support import ROOT
from tests.tools.deploy_support import create_rollback_alarms, push_image

# moto warns for each resource its CloudFormation skips; infra/README.md lists them.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

SBCNTRCTL = Path(sys.executable).parent / "sbcntrctl"
REGION = "ap-northeast-1"


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, str]]:
    with moto_server() as url:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AWS_") and k not in FROM_OUTPUTS
        }
        env.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        saved = {k: os.environ.get(k) for k in env if k.startswith("AWS_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        try:
            yield env
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def sbcntrctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SBCNTRCTL), *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_without_a_terminal_nothing_is_executed_unless_yes(aws: dict[str, str]) -> None:
    refused = subprocess.run(
        [str(SBCNTRCTL), "infra", "deploy", "prod", "--only", "network", "--poll", "0.05"],
        env=aws,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert refused.returncode == 2
    assert "Add     Vpc [AWS::EC2::VPC]" in refused.stdout
    assert "refused: not a terminal; pass --yes" in refused.stderr
    assert (
        boto3.client("ec2").describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.30.0.0/16"]}])[
            "Vpcs"
        ]
        == []
    )
    cfn = boto3.client("cloudformation")
    assert cfn.list_change_sets(StackName="sbcntr-prod-network")["Summaries"] == []
    cfn.delete_stack(StackName="sbcntr-prod-network")  # the REVIEW_IN_PROGRESS placeholder


def test_a_stack_whose_imports_are_missing_fails_naming_them(aws: dict[str, str]) -> None:
    failed = sbcntrctl(aws, "infra", "deploy", "stg", "--only", "edge", "--yes", "--poll", "0.05")
    assert failed.returncode == 1
    assert "sbcntr-stg-edge" in failed.stderr
    assert "No export named sbcntr-stg-" in failed.stderr


@pytest.mark.slow
def test_environment_from_empty_account_to_deployed_services(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # Three AZs, no NAT, its own name and address range: what a new user may choose.
    params = ["--param", "AzCount=3", "--param", "EgressMode=endpoints"]
    params += ["--param", "Engine=rds-postgres", "--param", "VpcCidrPrefix=10.40"]
    out = ok(sbcntrctl(aws, "infra", "deploy", "qa", "--yes", "--poll", "0.05", *params))
    for stack in STACKS:
        created = f"{stack.name('qa')}: CREATE_COMPLETE" in out
        assert created != stack.optional, stack.key
    assert "Add     MaintenanceRule [AWS::ElasticLoadBalancingV2::ListenerRule]" in out

    again = ok(
        sbcntrctl(aws, "infra", "deploy", "qa", "--yes", "--poll", "0.05", "--only", "network")
    )
    assert again.strip() == "sbcntr-qa-network: no changes"

    # --- outputs: every variable the taskdefs need, from the stacks
    env_file = tmp_path / "qa.env"
    ok(sbcntrctl(aws, "infra", "outputs", "qa", "--env-file", str(env_file)))
    variables = envfile.load(env_file)
    # An optional stack not deployed (the test-traffic hook's) gives none of its variables.
    deployed = {stack.key for stack in STACKS if not stack.optional}
    not_deployed = {v for v, (key, _) in FROM_OUTPUTS.items() if key not in deployed}
    assert set(variables) == (set(FROM_OUTPUTS) | set(DERIVED) | set(FOR_CHECKS)) - not_deployed
    assert variables["AZ_COUNT"] == "3"
    assert variables["AWS_ACCOUNT_ID"] == "123456789012"
    assert variables["ENV_NAME"] == "qa"
    assert variables["ECS_CLUSTER"] == "sbcntr-qa"
    assert variables["BACKEND_URL"].startswith("http://sbcntr-qa-internal-")
    assert variables["DATABASE_URL"].startswith("postgresql://sbcntr_app@sbcntr-qa.")
    assert variables["DATABASE_URL"].endswith(".rds.amazonaws.com:5432/sbcntr")

    ec2 = boto3.client("ec2")
    private = [variables[f"PRIVATE_SUBNET_{n}"] for n in (1, 2, 3)]
    app_subnets = ec2.describe_subnets(SubnetIds=private)["Subnets"]
    assert {s["CidrBlock"] for s in app_subnets} == {
        "10.40.16.0/20",
        "10.40.32.0/20",
        "10.40.48.0/20",
    }
    assert len({s["AvailabilityZone"] for s in app_subnets}) == 3
    assert all(not s["MapPublicIpOnLaunch"] for s in app_subnets)
    groups = ec2.describe_security_groups(GroupIds=[variables["BACKEND_SECURITY_GROUP"]])
    backend_in = groups["SecurityGroups"][0]["IpPermissions"]
    assert [(p["FromPort"], p["IpRanges"]) for p in backend_in] == [(8081, [])]
    assert len(backend_in[0]["UserIdGroupPairs"]) == 1

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=variables["DB_SECRET_ARN"])
    value = json.loads(secret["SecretString"])
    assert value["username"] == "app"
    assert len(value["password"]) == 32
    assert not set(value["password"]) & set("\"@/\\'` ")

    elbv2 = boto3.client("elbv2")
    tg = elbv2.describe_target_groups(TargetGroupArns=[variables["FRONTEND_TARGET_GROUP_ARN"]])
    frontend_tg = tg["TargetGroups"][0]
    assert (frontend_tg["HealthCheckPath"], frontend_tg["Port"]) == ("/readyz", 8080)
    assert frontend_tg["Matcher"] == {"HttpCode": "200"}
    # (moto drops TargetGroupAttributes: the 10 s deregistration delay is a template rule)

    # the roles carry exactly the policies of taskdefs/iam (rendered with the outputs)
    iam = boto3.client("iam")
    for role, policy_file in (
        ("sbcntr-qa-frontend-task", "task-role-policy-frontend.json"),
        ("sbcntr-qa-backend-task", "task-role-policy-backend.json"),
        ("sbcntr-qa-frontend-execution", "execution-role-policy-frontend.json"),
        ("sbcntr-qa-backend-execution", "execution-role-policy-backend.json"),
    ):
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert len(names) == 1, (role, names)
        path = ROOT / "taskdefs" / "iam" / policy_file
        document = iam.get_role_policy(RoleName=role, PolicyName=names[0])["PolicyDocument"]
        if isinstance(document, str):  # moto keeps a template's inline policy as repr()
            document = ast.literal_eval(document)
        assert document == template.render_json(path, variables), role

    cluster = boto3.client("ecs").describe_clusters(clusters=["sbcntr-qa"], include=["SETTINGS"])
    (described,) = cluster["clusters"]
    assert described["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert described["settings"] == [{"name": "containerInsights", "value": "enabled"}]

    # the registry stack's repositories are the release's images; the platform stack's log
    # groups include every sidecar's (the collector's too, for TRACING_BACKEND=otel)
    created = boto3.client("ecr").describe_repositories()["repositories"]
    assert {image.repository for image in IMAGES.values()} <= {r["repositoryName"] for r in created}
    groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix="/sbcntr/qa/")
    assert {g["logGroupName"].rsplit("/", 1)[1] for g in groups["logGroups"]} >= {
        "log-router",
        "xray-daemon",
        "otel-collector",
    }

    # --- push the images (no Docker engine here: the manifests are put directly), the
    # X-Ray daemon as the pull-through cache holds it after a first pull
    release = {**aws, "IMAGE_TAG": "dev-0a1b2c3"}
    for image in IMAGES.values():
        push_image(image.repository, release["IMAGE_TAG"])
    push_image("ecr-public/xray/aws-xray-daemon", "3.3.15")
    # The alarms the deployments roll back on come from the monitoring stack,
    # which needs a packaged Lambda: here they are made directly.
    create_rollback_alarms("qa")

    # --- deploy both services with those variables (the backend's migration task
    # first). moto's RunTask needs a memory figure on every container, which
    # Fargate does not (the task's memory is enough): the copy gives them one.
    taskdefs = tmp_path / "taskdefs"
    shutil.copytree(ROOT / "taskdefs", taskdefs)
    backend_td = taskdefs / "backend" / "task-def.json"
    td = json.loads(backend_td.read_text())
    for container in td["containerDefinitions"]:
        if "memory" not in container:
            container.setdefault("memoryReservation", 128)
    backend_td.write_text(json.dumps(td, indent=2))
    # moto does not apply the template's EnableDnsHostnames, and its RunTask of
    # an awsvpc task fails without it (network.yml sets it; AWS applies it).
    ec2 = boto3.client("ec2")
    for vpc in ec2.describe_vpcs()["Vpcs"]:
        ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    from_file = sbcntrctl(
        release,
        "deploy",
        "deploy",
        "backend",
        "--env-file",
        str(env_file),
        "--wait",
        "0",
        "--dir",
        str(taskdefs),
    )
    assert "revision 1" in ok(from_file)
    # verify refuses subnets in fewer AZs than the network has (PRIVATE_SUBNET_3 unset)
    two_azs = {**release, "PRIVATE_SUBNET_3": ""}
    refused = sbcntrctl(two_azs, "deploy", "verify", "frontend", "--from-stack", "qa")
    assert refused.returncode == 1, refused.stderr
    assert "cover 2 Availability Zones" in refused.stderr
    assert "of the network's 3" in refused.stderr
    from_stack = sbcntrctl(
        release, "deploy", "deploy", "frontend", "--from-stack", "qa", "--wait", "0"
    )
    assert "revision 1" in ok(from_stack)
    ecs = boto3.client("ecs")
    services = ecs.describe_services(
        cluster="sbcntr-qa", services=["sbcntr-frontend", "sbcntr-backend"]
    )["services"]
    assert len(services) == 2
    for service in services:
        network = service["networkConfiguration"]["awsvpcConfiguration"]
        assert network["subnets"] == private  # tasks in every AZ the network made
        name = service["serviceName"].removeprefix("sbcntr-").upper()
        assert network["securityGroups"] == [variables[f"{name}_SECURITY_GROUP"]]
        assert (
            service["loadBalancers"][0]["targetGroupArn"] == variables[f"{name}_TARGET_GROUP_ARN"]
        )
    frontend_td = ecs.describe_task_definition(taskDefinition=services[0]["taskDefinition"])
    frontend_env = {
        e["name"]: e["value"]
        for e in frontend_td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert frontend_env["BACKEND_URL"] == variables["BACKEND_URL"]

    # --- the release pipeline's deploy: a commit's digests, pinned, variables from the
    # stacks, with OpenTelemetry (the collector's repository and log group come from the
    # registry and platform stacks: the deploy's checks find both); the records of the
    # deployed images only, as the workflow passes them (the load generator's is none)
    commit = "0123456789abcdef0123456789abcdef01234567"
    ecr = boto3.client("ecr")
    records, digests = [], {}
    for name in DEPLOYED:
        image = IMAGES[name]
        repository = image.repository
        push_image(repository, commit)
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": commit}])
        digests[repository] = found["imageDetails"][0]["imageDigest"]
        record = tmp_path / f"digest-{name}.json"
        record.write_text(
            json.dumps(
                {
                    "image": name,
                    "repository": repository,
                    "commit": commit,
                    "digest": digests[repository],
                }
            )
        )
        records.append(str(record))
    released = ok(
        sbcntrctl(
            {**aws, "TRACING_BACKEND": "otel", "MIN_TASKS": "1", "MAX_TASKS": "3"},
            "release",
            "deploy",
            "qa",
            "--commit",
            commit,
            "--wait",
            "0",
            "--apply-capacity",
            "--dir",
            str(taskdefs),
            "--digests",
            *records,
        )
    )
    assert "qa sbcntr-backend: revision 2" in released
    assert "qa sbcntr-frontend: revision 2" in released
    for service in ("frontend", "backend"):  # --apply-capacity: min/max from scaling.json
        assert (
            f"scaling: register scalable target service/sbcntr-qa/sbcntr-{service}: min 1, max 3"
            in released
        )
    pinned = ecs.describe_task_definition(taskDefinition="sbcntr-backend")["taskDefinition"]
    by_name = {c["name"]: c for c in pinned["containerDefinitions"]}
    assert by_name["backend"]["image"].endswith(f"/sbcntr-backend@{digests['sbcntr-backend']}")
    assert by_name["backend"]["dockerLabels"]["org.opencontainers.image.revision"] == commit
    collector = by_name["otel-collector"]
    assert collector["image"].endswith(f"/sbcntr-otel-collector@{digests['sbcntr-otel-collector']}")
    assert collector["logConfiguration"]["options"]["awslogs-group"] == "/sbcntr/qa/otel-collector"
    assert "xray-daemon" not in by_name

    # --- maintenance: through the API, then through the stack parameter
    assert ok(sbcntrctl(aws, "maintenance", "status", "qa")).startswith(
        "sbcntr-qa-edge: maintenance off"
    )
    on = ok(sbcntrctl(aws, "maintenance", "on", "qa"))
    assert on.startswith("sbcntr-qa-edge: maintenance on")
    assert "declares MaintenanceMode=off" in on
    rule_arn = boto3.client("cloudformation").describe_stacks(StackName="sbcntr-qa-edge")["Stacks"][
        0
    ]["Outputs"]
    rule_arn = next(o["OutputValue"] for o in rule_arn if o["OutputKey"] == "MaintenanceRuleArn")
    rule = elbv2.describe_rules(RuleArns=[rule_arn])["Rules"][0]
    assert rule["Priority"] == "1"
    assert rule["Conditions"][0]["Field"] == "path-pattern"
    assert rule["Conditions"][0]["PathPatternConfig"] == {"Values": ["/*"]}
    (action,) = rule["Actions"]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "503"
    assert action["FixedResponseConfig"]["ContentType"] == "text/html"
    assert "<h1>Under maintenance</h1>" in action["FixedResponseConfig"]["MessageBody"]
    assert ok(sbcntrctl(aws, "maintenance", "status", "qa")).startswith(
        "sbcntr-qa-edge: maintenance on"
    )
    assert (
        ok(sbcntrctl(aws, "maintenance", "off", "qa")).strip() == "sbcntr-qa-edge: maintenance off"
    )
    # Off, the rule still answers the page, but only to the preview header: it never
    # forwards, so it names no target group for a blue/green deploy to get wrong.
    rule = elbv2.describe_rules(RuleArns=[rule_arn])["Rules"][0]
    assert [a["Type"] for a in rule["Actions"]] == ["fixed-response"]
    assert [c["Field"] for c in rule["Conditions"]] == ["http-header"]
    assert rule["Conditions"][0]["HttpHeaderConfig"] == {
        "HttpHeaderName": "X-Sbcntr-Maintenance-Preview",
        "Values": ["on"],
    }
    # A rule changed by hand is neither state: status says so in one line, and either
    # switch brings back the page (the rule's action too, not only its condition).
    elbv2.modify_rule(
        RuleArn=rule_arn,
        Actions=[{"Type": "forward", "TargetGroupArn": variables["FRONTEND_TARGET_GROUP_ARN"]}],
    )
    edited = sbcntrctl(aws, "maintenance", "status", "qa")
    assert edited.returncode == 1
    assert "is neither on nor off" in edited.stderr
    assert "Traceback" not in edited.stderr
    assert ok(sbcntrctl(aws, "maintenance", "off", "qa")).strip() == (
        "sbcntr-qa-edge: maintenance off"
    )
    (action,) = elbv2.describe_rules(RuleArns=[rule_arn])["Rules"][0]["Actions"]
    assert action["FixedResponseConfig"]["StatusCode"] == "503"
    # Production traffic meets the production rule (priority 10): both groups, as the
    # template wrote them (ECS moves the weights during a blue/green deploy).
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in boto3.client("cloudformation").describe_stacks(StackName="sbcntr-qa-edge")[
            "Stacks"
        ][0]["Outputs"]
    }
    production = elbv2.describe_rules(RuleArns=[outputs["FrontendProductionRuleArn"]])["Rules"][0]
    assert production["Priority"] == "10"
    (forward,) = production["Actions"]
    assert {
        (g["TargetGroupArn"], g["Weight"]) for g in forward["ForwardConfig"]["TargetGroups"]
    } == {
        (variables["FRONTEND_TARGET_GROUP_ARN"], 100),
        (outputs["FrontendAlternateTargetGroupArn"], 0),
    }
    test_rule = elbv2.describe_rules(RuleArns=[outputs["BackendTestRuleArn"]])["Rules"][0]
    (test_listener,) = elbv2.describe_listeners(
        ListenerArns=[test_rule["RuleArn"].replace("listener-rule/", "listener/").rsplit("/", 1)[0]]
    )["Listeners"]
    assert test_listener["Port"] == 8080
    assert outputs["BackendTestUrl"].endswith(":8080")

    # --- the deploy hook's stack (optional): its code from S3, the edge stack's test
    # listeners and security groups imported; the package is the folder's zip
    s3 = boto3.client("s3")
    s3.create_bucket(
        Bucket="sbcntr-qa-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    package = tmp_path / "deploy_hook.zip"
    subprocess.run(
        [sys.executable, "-m", "zipfile", "-c", str(package), "deploy_hook/"], cwd=ROOT, check=True
    )
    s3.put_object(Bucket="sbcntr-qa-artifacts", Key="deploy_hook/x.zip", Body=package.read_bytes())
    only_hook = ("--only", "deploy-hook", "--param", "HookCodeBucket=sbcntr-qa-artifacts")
    only_hook += ("--param", "HookCodeKey=deploy_hook/x.zip")
    hook = ok(sbcntrctl(aws, "infra", "deploy", "qa", "--yes", "--poll", "0.05", *only_hook))
    assert "sbcntr-qa-deploy-hook: CREATE_COMPLETE" in hook
    function = boto3.client("lambda").get_function(FunctionName="sbcntr-qa-deploy-hook")
    configuration = function["Configuration"]
    assert configuration["Handler"] == "deploy_hook.handler.lambda_handler"
    assert (
        configuration["Environment"]["Variables"]["BACKEND_TEST_URL"] == outputs["BackendTestUrl"]
    )
    assert configuration["Environment"]["Variables"]["FRONTEND_ALB_FULL_NAME"].startswith(
        "app/sbcntr-qa-public/"
    )
    hook_outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in boto3.client("cloudformation").describe_stacks(StackName="sbcntr-qa-deploy-hook")[
            "Stacks"
        ][0]["Outputs"]
    }
    assert hook_outputs["DeployHookFunctionArn"] == configuration["FunctionArn"]
    assert hook_outputs["DeployHookRoleArn"].endswith(":role/sbcntr-qa-deploy-hook-invoke")
    # What a BLUE_GREEN definition names, as the stacks made it, fits together
    # (sbcntrctl deploy verify's account check of the strategy).
    for service in ("frontend", "backend"):
        prefix = service.upper()
        blue_green = {
            "loadBalancers": [
                {
                    "targetGroupArn": variables[f"{prefix}_TARGET_GROUP_ARN"],
                    "advancedConfiguration": {
                        "alternateTargetGroupArn": variables[
                            f"{prefix}_ALTERNATE_TARGET_GROUP_ARN"
                        ],
                        "productionListenerRule": variables[f"{prefix}_PRODUCTION_RULE_ARN"],
                        "testListenerRule": variables[f"{prefix}_TEST_RULE_ARN"],
                        "roleArn": variables["ECS_LB_INFRASTRUCTURE_ROLE_ARN"],
                    },
                }
            ],
            "deploymentConfiguration": {
                "strategy": "BLUE_GREEN",
                "lifecycleHooks": [
                    {
                        "hookTargetArn": hook_outputs["DeployHookFunctionArn"],
                        "roleArn": hook_outputs["DeployHookRoleArn"],
                        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                    }
                ],
            },
        }
        assert traffic_shift.problems(blue_green) == [], service

    # --- updates keep the parameters not given (moto can update the registry stack; it
    # fails on stacks with conditional resources, see infra/README.md)
    for param in ("UntaggedExpiryDays=14", "KeepImagesPerEnvironment=20"):
        updated = sbcntrctl(
            aws,
            "infra",
            "deploy",
            "qa",
            "--yes",
            "--poll",
            "0.05",
            "--only",
            "registry",
            "--param",
            param,
        )
        assert "sbcntr-registry: UPDATE_COMPLETE" in ok(updated)
    registry = boto3.client("cloudformation").describe_stacks(StackName="sbcntr-registry")
    parameters = {
        p["ParameterKey"]: p["ParameterValue"] for p in registry["Stacks"][0]["Parameters"]
    }
    assert (parameters["UntaggedExpiryDays"], parameters["KeepImagesPerEnvironment"]) == (
        "14",
        "20",
    )
    repositories = boto3.client("ecr").describe_repositories()["repositories"]
    own = [r for r in repositories if not r["repositoryName"].startswith("ecr-public/")]
    assert {(r["repositoryName"], r["imageTagMutability"]) for r in own} == {
        (image.repository, "IMMUTABLE") for image in IMAGES.values()
    }  # (moto drops scanning, encryption and lifecycle: template rules check those)

    # --- delete refuses while services run in the cluster
    refused = sbcntrctl(aws, "infra", "delete", "qa", "--yes", "--poll", "0.05")
    assert refused.returncode == 1
    assert "sbcntr-qa still runs sbcntr-backend, sbcntr-frontend" in refused.stderr
    for service in ("sbcntr-frontend", "sbcntr-backend"):
        ecs.delete_service(cluster="sbcntr-qa", service=service, force=True)

    # --- the stack parameter declares maintenance (a second environment, created with it on)
    only = ("--only", "network", "--only", "platform", "--only", "edge")
    declared = sbcntrctl(
        aws,
        "infra",
        "deploy",
        "stg",
        "--yes",
        "--poll",
        "0.05",
        *only,
        "--param",
        "MaintenanceMode=on",
    )
    assert "sbcntr-stg-edge: CREATE_COMPLETE" in ok(declared)
    status = ok(sbcntrctl(aws, "maintenance", "status", "stg"))
    assert status.strip() == "sbcntr-stg-edge: maintenance on"  # live and declared agree

    # --- delete: in reverse order. (moto deletes a stack's resources without ordering
    # them and leaves the VPC's route tables, endpoints and gateways behind, so the
    # network stack is not deleted here; see infra/README.md.)
    only = ("--only", "platform", "--only", "edge", "--only", "data", "--only", "deploy-hook")
    deleted = ok(sbcntrctl(aws, "infra", "delete", "qa", "--yes", "--poll", "0.05", *only))
    order = [line.split(":")[0] for line in deleted.splitlines()[:4]]
    # The hook's stack first: it imports the edge stack's exports.
    assert order == [
        "sbcntr-qa-deploy-hook",
        "sbcntr-qa-data",
        "sbcntr-qa-edge",
        "sbcntr-qa-platform",
    ]
    remaining = boto3.client("cloudformation").describe_stacks()["Stacks"]
    assert {s["StackName"] for s in remaining if s["StackStatus"] != "DELETE_COMPLETE"} == {
        "sbcntr-registry",
        "sbcntr-qa-network",
        "sbcntr-stg-network",
        "sbcntr-stg-platform",
        "sbcntr-stg-edge",
    }
    gone = sbcntrctl(aws, "infra", "outputs", "qa")
    assert gone.returncode == 1
    assert "sbcntr-qa-platform does not exist" in gone.stderr

    # --- what the stacks kept is said, stays readable (its key too), and blocks a re-create
    kept = deleted.splitlines()[4]
    for name in ("/sbcntr/qa/frontend", "sbcntr/qa/database", "sbcntr-qa-logs-123456789012-"):
        assert name in kept, kept
    (secrets_key,) = [
        k
        for k in kms_keys()
        if k["Description"] == "sbcntr-qa: Secrets Manager secrets" and k["KeyState"] == "Enabled"
    ]
    assert f"Key {secrets_key['KeyId']}" in kept
    assert "infra delete qa --purge-retained" in deleted
    again = sbcntrctl(aws, "infra", "deploy", "qa", "--yes", "--poll", "0.05", "--only", "platform")
    assert again.returncode == 1
    assert (
        "sbcntr-qa-platform cannot be created: a deleted qa kept LogGroup /sbcntr/qa/frontend"
        in (again.stderr)
    )
    assert len(again.stderr.strip().splitlines()) == 1

    # --- purge: the kept data goes, the keys are scheduled for deletion, qa can be created
    purged = ok(
        sbcntrctl(
            aws, "infra", "delete", "qa", "--yes", "--poll", "0.05", *only, "--purge-retained"
        )
    )
    assert f"Key {secrets_key['KeyId']}: deletion scheduled in 7 days" in purged
    assert "Secret sbcntr/qa/database: deleted" in purged
    assert (
        boto3.client("logs").describe_log_groups(logGroupNamePrefix="/sbcntr/qa/frontend")[
            "logGroups"
        ]
        == []
    )
    states = {k["KeyId"]: k["KeyState"] for k in kms_keys()}
    assert states[secrets_key["KeyId"]] == "PendingDeletion"
    network_key = variables["SECRETS_KMS_KEY_ARN"]  # (the platform key; the network's stays)
    assert network_key.endswith(secrets_key["KeyId"])
    recreated = ok(
        sbcntrctl(aws, "infra", "deploy", "qa", "--yes", "--poll", "0.05", "--only", "platform")
    )
    assert "sbcntr-qa-platform: CREATE_COMPLETE" in recreated


def kms_keys() -> list[dict[str, str]]:
    kms = boto3.client("kms")
    return [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in kms.list_keys()["Keys"]]
