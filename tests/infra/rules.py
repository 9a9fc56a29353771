"""Rules the parsed templates must keep, each returning the problems it finds.

Every rule has tests that break a template on purpose and expect the rule to
name the break (tests/infra/test_templates.py).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any

from tests.infra import iam
from tests.infra.cfn import defaults, resolve, resources

Templates = Mapping[str, dict[str, Any]]
Rule = tuple[str, int, int, str]  # protocol, from port, to port, source

# The chain the book draws: internet -> public ALB -> frontend -> internal ALB ->
# backend -> database; the endpoints admit the two app groups and the deploy hook;
# the ALBs' test listeners (8080) admit the deploy hook and the operators' range
# (the OperatorCidr parameter, when set); the bastion (operations.yml) and the hook
# admit nothing. Nothing else.
TEST_PORT = 8080
OPERATORS = "param:OperatorCidr"
EXPECTED_INGRESS: dict[str, set[Rule]] = {
    "PublicAlbSecurityGroup": {
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", TEST_PORT, TEST_PORT, "sg:DeployHookSecurityGroup"),
        ("tcp", TEST_PORT, TEST_PORT, OPERATORS),
    },
    "FrontendSecurityGroup": {("tcp", 8080, 8080, "sg:PublicAlbSecurityGroup")},
    "InternalAlbSecurityGroup": {
        ("tcp", 80, 80, "sg:FrontendSecurityGroup"),
        ("tcp", TEST_PORT, TEST_PORT, "sg:DeployHookSecurityGroup"),
        ("tcp", TEST_PORT, TEST_PORT, OPERATORS),
    },
    "BackendSecurityGroup": {("tcp", 8081, 8081, "sg:InternalAlbSecurityGroup")},
    "DatabaseSecurityGroup": {("tcp", 5432, 5432, "sg:BackendSecurityGroup")},
    "BastionSecurityGroup": set(),
    "DeployHookSecurityGroup": set(),
    "EndpointSecurityGroup": {
        ("tcp", 443, 443, "sg:FrontendSecurityGroup"),
        ("tcp", 443, 443, "sg:BackendSecurityGroup"),
        ("tcp", 443, 443, "sg:DeployHookSecurityGroup"),
    },
}
# What the internet may open: the public ALB's production ports, nothing else.
INTERNET_PORTS = {80, 443}


def _group_name(ref: Any) -> str:
    """A security group reference as the group's logical id (exports carry the same name)."""
    if isinstance(ref, Mapping) and "Ref" in ref:
        return str(ref["Ref"])
    if isinstance(ref, Mapping) and "Fn::ImportValue" in ref:
        export = ref["Fn::ImportValue"]
        name = export.get("Fn::Sub", "") if isinstance(export, Mapping) else str(export)
        return str(name).rsplit("-", 1)[-1]
    return f"?{ref!r}"


def _rule(entry: Mapping[str, Any]) -> Rule:
    if "SourceSecurityGroupId" in entry:
        source = "sg:" + _group_name(entry["SourceSecurityGroupId"])
    else:
        cidr = entry.get("CidrIp") or entry.get("CidrIpv6") or entry.get("SourcePrefixListId")
        # A range given as a parameter is named by the parameter (its pattern is checked).
        source = f"param:{cidr['Ref']}" if isinstance(cidr, Mapping) else str(cidr)
    protocol = str(entry["IpProtocol"])
    return (protocol, int(entry.get("FromPort", -1)), int(entry.get("ToPort", -1)), source)


def ingress(templates: Templates) -> dict[str, set[Rule]]:
    """Every security group of the templates and the ingress rules it ends up with."""
    found: dict[str, set[Rule]] = {}
    for tpl in templates.values():
        for name, group in resources(tpl, "AWS::EC2::SecurityGroup").items():
            rules = group["Properties"].get("SecurityGroupIngress", [])
            found.setdefault(name, set()).update(_rule(r) for r in rules)
    for tpl in templates.values():
        for extra in resources(tpl, "AWS::EC2::SecurityGroupIngress").values():
            props = extra["Properties"]
            found.setdefault(_group_name(props["GroupId"]), set()).add(_rule(props))
    return found


def security_group_problems(templates: Templates) -> list[str]:
    actual = ingress(templates)
    problems = []
    for group in sorted(set(actual) | set(EXPECTED_INGRESS)):
        want, have = EXPECTED_INGRESS.get(group), actual.get(group)
        if want is None or have is None:
            problems.append(f"{group}: {'unexpected group' if want is None else 'missing'}")
            continue
        problems += [f"{group}: unexpected ingress {r}" for r in sorted(have - want)]
        problems += [f"{group}: missing ingress {r}" for r in sorted(want - have)]
    for group, rules in actual.items():
        for rule in rules:
            if rule[3] not in ("0.0.0.0/0", "::/0"):
                continue
            if group != "PublicAlbSecurityGroup":
                problems.append(f"{group}: open to the internet {rule}")
            elif rule[1] != rule[2] or rule[1] not in INTERNET_PORTS:
                problems.append(f"{group}: port {rule[1]}-{rule[2]} open to the internet {rule}")
    return problems


def bucket_problems(platform: Mapping[str, Any]) -> list[str]:
    """The log bucket: no public access, TLS only, encrypted, logs age out."""
    problems = []
    bucket = platform["Resources"]["LogBucket"]["Properties"]
    block = bucket.get("PublicAccessBlockConfiguration", {})
    for flag in (
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ):
        if block.get(flag) is not True:
            problems.append(f"LogBucket: {flag} is not true")
    if not bucket.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration"):
        problems.append("LogBucket: no default encryption")
    rules = bucket.get("LifecycleConfiguration", {}).get("Rules", [])
    transitions = {
        (t["StorageClass"], int(t["TransitionInDays"]))
        for r in rules
        if r.get("Status") == "Enabled"
        for t in r.get("Transitions", [])
    }
    if not {("STANDARD_IA", 30), ("GLACIER", 90)} <= transitions:
        problems.append(f"LogBucket: lifecycle transitions are {sorted(transitions)}")
    if not any("ExpirationInDays" in r for r in rules if r.get("Status") == "Enabled"):
        problems.append("LogBucket: objects never expire")
    policies = [
        p["Properties"]["PolicyDocument"]
        for p in resources(platform, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "LogBucket"}
    ]
    if len(policies) != 1:
        return [*problems, f"LogBucket: {len(policies)} bucket policies"]
    statements = policies[0]["Statement"]
    tls = [
        s
        for s in statements
        if s.get("Effect") == "Deny"
        and s.get("Principal") == "*"
        and s.get("Action") in ("s3:*", "*")
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    if not tls:
        problems.append("LogBucket policy: no Deny of every action without TLS")
    else:
        covered = json.dumps(tls[0].get("Resource"))
        if "LogBucket.Arn" not in covered or "/*" not in covered:
            problems.append("LogBucket policy: the TLS Deny must cover the bucket and its objects")
    for s in statements:
        if s.get("Effect") == "Allow" and s.get("Principal") in ("*", {"AWS": "*"}):
            problems.append(f"LogBucket policy: {s.get('Sid')} allows everyone")
    return problems


PROD_TAGS = ({"prod-a1b2c3d"}, {"prod-a1b2c3d", "stg-a1b2c3d"}, {"prod-a1b2c3d", "dev-a1b2c3d"})
# The default "images per repository" quota (Amazon ECR service quotas): a count
# rule at or above it can never expire anything.
ECR_IMAGES_PER_REPOSITORY = 100_000


def _selects(selection: Mapping[str, Any], tags: set[str]) -> bool:
    """ECR's selection: ``tagged`` with prefixes matches when every prefix matches a tag."""
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not tags
    prefixes = selection.get("tagPrefixList", [])
    patterns = selection.get("tagPatternList", [])
    if patterns:
        return all(any(fnmatch.fnmatchcase(t, p) for t in tags) for p in patterns)
    return bool(tags) and all(any(t.startswith(p) for t in tags) for p in prefixes)


def lifecycle_policy(registry: Mapping[str, Any], repository: str) -> dict[str, Any]:
    """The repository's lifecycle policy as ECR receives it (parameter defaults applied)."""
    text = registry["Resources"][repository]["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]
    policy: dict[str, Any] = json.loads(resolve(text, defaults(registry)))
    return policy


# The calls that put an image into a repository (Amazon ECR user guide, "Pushing an
# image": the layer upload, then the manifest) and the one that deletes images.
PUSH_ACTIONS = {
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchDeleteImage",
}


def _only_ci_pushes(props: Mapping[str, Any]) -> bool:
    """Once ``CiRoleArn`` is set, the repository policy denies every push action to every
    principal whose ARN is neither the CI role's nor the break-glass role's."""
    branches = props.get("RepositoryPolicyText", {}).get("Fn::If", [])
    if len(branches) != 3 or branches[0] != "HasCiRole":
        return False
    for st in branches[1].get("Statement", []):
        exempt = json.dumps(st.get("Condition", {}).get("ArnNotEquals", {}))
        refs = set(re.findall(r'"Ref": "(\w+)"', exempt))
        if (
            st.get("Effect") == "Deny"
            and st.get("Principal") == "*"
            and set(st.get("Action", [])) >= PUSH_ACTIONS
            and "CiRoleArn" in refs
            and refs <= {"CiRoleArn", "BreakGlassRoleArn"}
        ):
            return True
    return False


def registry_problems(registry: Mapping[str, Any]) -> list[str]:
    """Immutable, scanned, encrypted repositories whose lifecycle never expires production
    and into which only the CI role pushes.

    ECR lifecycle rules: rules apply by ascending ``rulePriority``; "an image that
    matches the tagging requirements of a rule cannot be expired by a rule with a
    lower priority"; a ``tagStatus: any`` rule must come last (Amazon ECR user guide,
    "Lifecycle policies" and "Lifecycle policy properties"). So a production image
    is safe when the first rule that selects it can never fire.
    """
    problems = []
    for name, repo in resources(registry, "AWS::ECR::Repository").items():
        props = repo["Properties"]
        if props.get("ImageTagMutability") != "IMMUTABLE":
            problems.append(f"{name}: tags are not IMMUTABLE")
        if props.get("ImageScanningConfiguration", {}).get("ScanOnPush") is not True:
            problems.append(f"{name}: no scan on push")
        if props.get("EncryptionConfiguration", {}).get("EncryptionType") not in (
            "KMS",
            "KMS_DSSE",
        ):
            problems.append(f"{name}: not encrypted with KMS")
        rules = sorted(lifecycle_policy(registry, name)["rules"], key=lambda r: r["rulePriority"])
        for tags in PROD_TAGS:
            first = next((r for r in rules if _selects(r["selection"], tags)), None)
            if first is None:
                continue
            selection = first["selection"]
            never = (
                selection["countType"] == "imageCountMoreThan"
                and selection["countNumber"] >= ECR_IMAGES_PER_REPOSITORY
            )
            if not never:
                problems.append(
                    f"{name}: an image tagged {sorted(tags)} can be expired by rule "
                    f"{first['rulePriority']} ({first.get('description', '')})"
                )
        if not _only_ci_pushes(props):
            problems.append(f"{name}: push is not limited to the CI role")
        if not any(r["selection"]["tagStatus"] == "untagged" for r in rules):
            problems.append(f"{name}: untagged images never expire")
        for prefix in ("dev-", "stg-"):
            if not any(prefix in r["selection"].get("tagPrefixList", []) for r in rules):
                problems.append(f"{name}: no rule keeps the newest {prefix} images")
    return problems


MANAGED_GROUPS = {
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
}


def waf_problems(edge: Mapping[str, Any]) -> list[str]:
    """The web ACL guards the public ALB, blocks with the managed groups and a rate rule, logs."""
    problems = []
    acls = resources(edge, "AWS::WAFv2::WebACL")
    if len(acls) != 1:
        return [f"{len(acls)} web ACLs"]
    (acl_name, acl), *_ = acls.items()
    public = [
        name
        for name, lb in resources(edge, "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
        if lb["Properties"].get("Scheme") == "internet-facing"
    ]
    associated = {
        _group_name(a["Properties"]["ResourceArn"])
        for a in resources(edge, "AWS::WAFv2::WebACLAssociation").values()
        if a["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_name, "Arn"]}
    }
    for name in public:
        if name not in associated:
            problems.append(f"{name} (internet-facing) has no web ACL")
    props = acl["Properties"]
    if props.get("Scope") != "REGIONAL":
        problems.append("the web ACL of an ALB must be REGIONAL")
    enforced = set()
    for rule in props.get("Rules", []):
        statement = rule["Statement"]
        if "ManagedRuleGroupStatement" in statement:
            if rule.get("OverrideAction") == {"None": {}}:
                enforced.add(statement["ManagedRuleGroupStatement"]["Name"])
            else:
                problems.append(f"{rule['Name']}: managed group only counts")
        if "RateBasedStatement" in statement:
            if "Block" in rule.get("Action", {}):
                enforced.add("rate")
            else:
                problems.append(f"{rule['Name']}: rate rule does not block")
    for missing in sorted((MANAGED_GROUPS | {"rate"}) - enforced):
        problems.append(f"not enforced: {missing}")
    logging = [
        c["Properties"]
        for c in resources(edge, "AWS::WAFv2::LoggingConfiguration").values()
        if c["Properties"]["ResourceArn"] == {"Fn::GetAtt": [acl_name, "Arn"]}
    ]
    groups = {
        name: g["Properties"]["LogGroupName"]
        for name, g in resources(edge, "AWS::Logs::LogGroup").items()
    }
    destinations = json.dumps([c["LogDestinationConfigs"] for c in logging])
    logged_to = [name for name in groups if "${" + name + "}" in destinations]
    if not logged_to:
        problems.append("the web ACL logs nowhere named")
    for name in logged_to:
        if not str(resolve(groups[name], {"EnvName": "dev"})).startswith("aws-waf-logs-"):
            problems.append(f"{name}: WAF log groups must start with aws-waf-logs-")
    return problems


def _attributes(props: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {a["Key"]: a["Value"] for a in props.get(key, [])}


def edge_problems(edge: Mapping[str, Any]) -> list[str]:
    """Target groups as the taskdefs' timing budget needs them; the maintenance rule.

    taskdefs/README.md: health check ``GET /readyz`` answered 200, deregistration
    delay 10 s, ALB idle timeout below the apps' 75 s keep-alive.
    """
    problems = []
    ports = {
        "FrontendTargetGroup": 8080,
        "FrontendAlternateTargetGroup": 8080,
        "BackendTargetGroup": 8081,
        "BackendAlternateTargetGroup": 8081,
    }
    groups = resources(edge, "AWS::ElasticLoadBalancingV2::TargetGroup")
    for name, port in ports.items():
        props = groups.get(name, {}).get("Properties", {})
        if props.get("Port") != port or props.get("TargetType") != "ip":
            problems.append(f"{name}: must target ip:{port} (awsvpc tasks)")
        if props.get("HealthCheckPath") != "/readyz":
            problems.append(f"{name}: health check is {props.get('HealthCheckPath')}, not /readyz")
        if props.get("Matcher") != {"HttpCode": "200"}:
            problems.append(f"{name}: health check must match 200 only")
        delay = _attributes(props, "TargetGroupAttributes").get(
            "deregistration_delay.timeout_seconds"
        )
        if delay != "10":
            problems.append(f"{name}: deregistration delay {delay}, not 10 s")
    for name, lb in resources(edge, "AWS::ElasticLoadBalancingV2::LoadBalancer").items():
        idle = int(
            _attributes(lb["Properties"], "LoadBalancerAttributes")["idle_timeout.timeout_seconds"]
        )
        if idle >= 75:
            problems.append(f"{name}: idle timeout {idle} s is not below the apps' 75 s keep-alive")
    return problems + maintenance_problems(edge) + blue_green_problems(edge)


EVERY_PATH = [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]


def maintenance_problems(edge: Mapping[str, Any]) -> list[str]:
    """The maintenance rule: always the 503 page, first; on, every path; off, no request
    production traffic sends (a header only an operator sets, to preview the page)."""
    rule = edge["Resources"].get("MaintenanceRule", {}).get("Properties", {})
    problems = []
    conditions = rule.get("Conditions", [])
    if isinstance(conditions, Mapping) and "Fn::If" in conditions:
        _, on, off = conditions["Fn::If"]
    else:
        on = off = conditions
    if on != EVERY_PATH:
        problems.append("MaintenanceRule: must match every path")
    if not off or any(c.get("Field") != "http-header" for c in off):
        problems.append("MaintenanceRule: off, it must match no production request")
    actions = rule.get("Actions")
    if (
        not isinstance(actions, list)
        or len(actions) != 1
        or actions[0].get("Type") != "fixed-response"
        or actions[0]["FixedResponseConfig"].get("StatusCode") != "503"
        or actions[0]["FixedResponseConfig"].get("ContentType") != "text/html"
    ):
        problems.append("MaintenanceRule: maintenance must answer 503 text/html")
    if rule.get("Priority") != 1:
        problems.append("MaintenanceRule: must come before every other rule (priority 1)")
    return problems


# Each service: its production listener(s), its two groups, its rules.
BLUE_GREEN = {
    "Frontend": {
        "listeners": {"HttpsListener", "HttpListener"},
        "alb": "PublicAlb",
    },
    "Backend": {"listeners": {"InternalListener"}, "alb": "InternalAlb"},
}
LB_POLICY = "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"
# The interface the deploy tooling and the hook read (exported as sbcntr-<env>-<name>).
EDGE_EXPORTS = {
    f"{service}{name}"
    for service in BLUE_GREEN
    for name in (
        "TargetGroupArn",
        "AlternateTargetGroupArn",
        "ProductionRuleArn",
        "TestRuleArn",
        "TargetGroupFullName",
        "AlternateTargetGroupFullName",
        "TestUrl",
    )
} | {
    "LoadBalancerInfrastructureRoleArn",
    "PublicAlbFullName",
    "InternalAlbFullName",
    "PublicAlbSecurityGroup",
    "InternalAlbSecurityGroup",
}


def _refs(value: Any) -> set[str]:
    """Every logical id ``value`` refers to with Ref (both branches of an Fn::If)."""
    text = json.dumps(value)
    return set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))


def _weights(rule: Mapping[str, Any]) -> dict[str, int] | None:
    """The rule's forward weights by target group, or None if it is not one forward."""
    actions = rule.get("Actions", [])
    if len(actions) != 1 or actions[0].get("Type") != "forward":
        return None
    groups = actions[0].get("ForwardConfig", {}).get("TargetGroups", [])
    return {next(iter(_refs(g["TargetGroupArn"])), "?"): int(g["Weight"]) for g in groups}


def blue_green_problems(edge: Mapping[str, Any]) -> list[str]:
    """What ECS blue/green and canary deploys need of the edge stack, per service.

    "Application Load Balancer resources for blue/green, linear, and canary
    deployments" and "Amazon ECS infrastructure IAM role for load balancers"
    (Amazon ECS Developer Guide): a primary and an alternate target group alike;
    a production listener rule forwarding to both (ECS moves the weights; primary
    100 to start); a test listener rule, on another listener, forwarding to the
    alternate group; a role ECS assumes with the load balancer policy. Every
    request meets a rule first: the listeners' default is a 404, never a forward
    that would bypass the weights.
    """
    res = edge["Resources"]
    problems = []
    for service, spec in BLUE_GREEN.items():
        primary, alternate = f"{service}TargetGroup", f"{service}AlternateTargetGroup"
        a = res.get(primary, {}).get("Properties", {})
        b = res.get(alternate, {}).get("Properties", {})
        same = ("Port", "Protocol", "TargetType", "HealthCheckPath", "Matcher")
        if not b or any(a.get(k) != b.get(k) for k in same):
            problems.append(f"{alternate}: must match {primary} (port, protocol, health check)")
        production = res.get(f"{service}ProductionRule", {}).get("Properties", {})
        if _refs(production.get("ListenerArn")) != spec["listeners"]:
            problems.append(f"{service}ProductionRule: not on the production listener")
        if production.get("Conditions") != EVERY_PATH:
            problems.append(f"{service}ProductionRule: must match every path")
        if _weights(production) != {primary: 100, alternate: 0}:
            problems.append(
                f"{service}ProductionRule: must forward to both groups, primary 100 and alternate 0"
            )
        test = res.get(f"{service}TestRule", {}).get("Properties", {})
        test_listeners = _refs(test.get("ListenerArn"))
        listener = res.get(next(iter(test_listeners), ""), {}).get("Properties", {})
        if (
            len(test_listeners) != 1
            or test_listeners & spec["listeners"]
            or listener.get("Port") != TEST_PORT
            or _refs(listener.get("LoadBalancerArn")) != {spec["alb"]}
        ):
            problems.append(
                f"{service}TestRule: must be on its own listener (port {TEST_PORT}) "
                f"of {spec['alb']}"
            )
        weights = _weights(test)
        if weights is None or set(weights) != {primary, alternate} or weights[primary] != 0:
            problems.append(f"{service}TestRule: test traffic must go to the alternate group only")
    for name, listener in resources(edge, "AWS::ElasticLoadBalancingV2::Listener").items():
        if '"forward"' in json.dumps(listener["Properties"]["DefaultActions"]):
            problems.append(f"{name}: default action must be a fixed 404, not a forward")
    role = res.get("LoadBalancerInfrastructureRole", {}).get("Properties", {})
    trust = role.get("AssumeRolePolicyDocument", {"Statement": []})
    principals = [st.get("Principal") for st in trust["Statement"]]
    if principals != [{"Service": "ecs.amazonaws.com"}] or not iam.allows(
        trust, "sts:AssumeRole", "*"
    ):
        problems.append("LoadBalancerInfrastructureRole: must trust ecs.amazonaws.com only")
    policies = [resolve(p, {"AWS::Partition": "aws"}) for p in role.get("ManagedPolicyArns", [])]
    if policies != [LB_POLICY] or role.get("Policies"):
        problems.append(
            f"LoadBalancerInfrastructureRole: policies {policies}, not only {LB_POLICY}"
        )
    outputs = edge.get("Outputs", {})
    for name in sorted(EDGE_EXPORTS):
        export = outputs.get(name, {}).get("Export", {}).get("Name")
        if export != {"Fn::Sub": f"sbcntr-${{EnvName}}-{name}"}:
            problems.append(f"output {name}: not exported as sbcntr-<env>-{name}")
    return problems


HOOK_ARN = "arn:aws:lambda:ap-northeast-1:123456789012:function:sbcntr-dev-deploy-hook"


def deploy_hook_problems(hook: Mapping[str, Any]) -> list[str]:
    """The role ECS invokes the hook with ("Permissions required for Lambda functions in
    Amazon ECS blue/green deployments"): ECS may assume it; it invokes this function only."""
    role = hook["Resources"].get("DeployHookInvokeRole", {}).get("Properties", {})
    names = {"DeployHookFunction.Arn": HOOK_ARN}
    policies = [resolve(p["PolicyDocument"], names) for p in role.get("Policies", [])]
    problems = []
    trust = role.get("AssumeRolePolicyDocument", {"Statement": []})
    if [st.get("Principal") for st in trust["Statement"]] != [{"Service": "ecs.amazonaws.com"}]:
        problems.append("DeployHookInvokeRole: must trust ecs.amazonaws.com only")
    if not iam.allows(policies, "lambda:InvokeFunction", HOOK_ARN):
        problems.append("DeployHookInvokeRole: cannot invoke the hook")
    other = HOOK_ARN.replace("deploy-hook", "error-notifier")
    if iam.allows(policies, "lambda:InvokeFunction", other) or iam.allows(
        policies, "lambda:UpdateFunctionCode", HOOK_ARN
    ):
        problems.append("DeployHookInvokeRole: may do more than invoke the hook")
    function = hook["Resources"].get("DeployHookFunction", {}).get("Properties", {})
    groups = function.get("VpcConfig", {}).get("SecurityGroupIds")
    if groups != [{"Ref": "DeployHookSecurityGroup"}]:
        problems.append("DeployHookFunction: not in the VPC behind its own security group")
    return problems


ENDPOINT_SERVICES = {
    "ecr.api",
    "ecr.dkr",
    "logs",
    "xray",
    "secretsmanager",
    # Session Manager: ECS Exec to the bastion, the FIS task actions' SSM agent.
    "ssm",
    "ssmmessages",
    "ec2messages",
    # The deploy hook's look-up of the public ALB's private addresses (deploy_hook/).
    "ec2",
}


def network_problems(network: Mapping[str, Any]) -> list[str]:
    """The endpoints the tasks need without NAT, and flow logs of all traffic."""
    problems = []
    interface, gateway = set(), set()
    for endpoint in resources(network, "AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        service = str(props["ServiceName"]["Fn::Sub"]).rsplit("}.", 1)[-1]
        if props.get("VpcEndpointType") == "Interface":
            interface.add(service)
            if props.get("PrivateDnsEnabled") is not True:
                problems.append(f"{service}: private DNS off (the SDKs would bypass it)")
            if props.get("SecurityGroupIds") != [{"Ref": "EndpointSecurityGroup"}]:
                problems.append(f"{service}: not behind the endpoint security group")
        else:
            gateway.add(service)
    for missing in sorted(ENDPOINT_SERVICES - interface):
        problems.append(f"no interface endpoint for {missing}")
    if "s3" not in gateway:
        problems.append("no S3 gateway endpoint (ECR image layers come from S3)")
    logs = [f["Properties"] for f in resources(network, "AWS::EC2::FlowLog").values()]
    if not any(
        f.get("TrafficType") == "ALL" and f.get("ResourceId") == {"Ref": "Vpc"} for f in logs
    ):
        problems.append("no flow log of ALL traffic of the VPC")
    return problems


def data_problems(data: Mapping[str, Any]) -> list[str]:
    """Private, encrypted, snapshot on delete, deletion protection in prod."""
    problems = []
    prod_only = {"Fn::If": ["IsProd", True, False]}
    databases = {
        **resources(data, "AWS::RDS::DBCluster"),
        **{
            k: v
            for k, v in resources(data, "AWS::RDS::DBInstance").items()
            if "DBClusterIdentifier" not in v["Properties"]
        },
    }
    for name, db in databases.items():
        props = db["Properties"]
        if props.get("DeletionProtection") != prod_only:
            problems.append(f"{name}: deletion protection must be on in prod")
        if props.get("StorageEncrypted") is not True:
            problems.append(f"{name}: storage not encrypted")
        if db.get("DeletionPolicy") != "Snapshot":
            problems.append(f"{name}: deleting the stack must leave a snapshot")
        groups = props.get("VpcSecurityGroupIds") or props.get("VPCSecurityGroups")
        if groups != [{"Ref": "DatabaseSecurityGroup"}]:
            problems.append(f"{name}: not behind the database security group")
    for name, instance in resources(data, "AWS::RDS::DBInstance").items():
        if instance["Properties"].get("PubliclyAccessible") is not False:
            problems.append(f"{name}: publicly accessible")
    return problems
