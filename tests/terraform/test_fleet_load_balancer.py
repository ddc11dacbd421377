"""The module with its load balancer on, applied against the emulator with the real provider,
read back with boto3, then destroyed.

Two fleets in one apply: "signin" (OIDC with the client secret in an SSM SecureString, model
pulls refused, min 1 and max 3 so it scales) and "pulls" (the secret in Secrets Manager through
SSM's /aws/reference/secretsmanager/ path, pulls allowed, a fixed size). The certificate is one
the emulator's ACM issued.

What moto does with these (seen with moto 5.2.x): it stores and describes the lifecycle hook,
but its instances go straight to InService (no Pending:Wait) and it does not implement
CompleteLifecycleAction, so the user-data's side of the hook is tested in test_user_data.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from tfharness import (
    CATALOG_TAGS,
    Terraform,
    default_network,
    plugin_cache,
    register_ami,
    stage,
    terraform_env,
)
from tooling import use_emulator

pytestmark = [pytest.mark.terraform, pytest.mark.emulator, pytest.mark.slow]

UI_PORT = 3000
HEARTBEAT_S = 1200
TARGET = 7.0
SECRET = "oidc-client-secret-value"
SSM_SECRET = "/bakery/test/oidc-client-secret"
SM_SECRET = "bakery-test-oidc"
ISSUER = "https://login.example.com"


def _oidc(parameter: str) -> dict[str, str]:
    return {
        "issuer": ISSUER,
        "client_id": "bakery-chat",
        "client_secret_ssm_parameter": parameter,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/oauth/token",
        "user_info_endpoint": f"{ISSUER}/userinfo",
    }


@dataclass
class Balanced:
    """What the emulator held after apply (read before the destroy), and after the destroy."""

    outputs: dict[str, dict[str, Any]]
    certificate: str
    listeners: dict[tuple[str, int], dict[str, Any]]  # (fleet, port)
    rules: dict[str, list[dict[str, Any]]]  # the HTTPS listener's, less the default
    target_groups: dict[str, dict[str, Any]]
    target_group_attributes: dict[str, dict[str, str]]
    groups: dict[str, dict[str, Any]]
    hooks: dict[str, list[dict[str, Any]]]
    policies: dict[str, list[dict[str, Any]]]
    user_data: dict[str, str]
    role_policies: dict[str, dict[str, Any]]
    security_groups: dict[str, dict[str, Any]]  # by ID
    left: dict[str, list[str]] = field(default_factory=dict)


def _read(outputs: dict[str, dict[str, Any]], certificate: str) -> Balanced:
    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    autoscaling, iam = boto3.client("autoscaling"), boto3.client("iam")
    listeners: dict[tuple[str, int], dict[str, Any]] = {}
    rules: dict[str, list[dict[str, Any]]] = {}
    read = Balanced(outputs, certificate, listeners, rules, {}, {}, {}, {}, {}, {}, {}, {})
    for fleet, out in outputs.items():
        for listener in elbv2.describe_listeners(LoadBalancerArn=out["load_balancer_arn"])[
            "Listeners"
        ]:
            listeners[(fleet, listener["Port"])] = listener
        rules[fleet] = [
            r
            for r in elbv2.describe_rules(ListenerArn=listeners[(fleet, 443)]["ListenerArn"])[
                "Rules"
            ]
            if not r["IsDefault"]
        ]
        tg = out["target_group_arn"]
        (read.target_groups[fleet],) = elbv2.describe_target_groups(TargetGroupArns=[tg])[
            "TargetGroups"
        ]
        read.target_group_attributes[fleet] = {
            a["Key"]: a["Value"]
            for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg)["Attributes"]
        }
        name = out["autoscaling_group_name"]
        (read.groups[fleet],) = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name]
        )["AutoScalingGroups"]
        read.hooks[fleet] = autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)[
            "LifecycleHooks"
        ]
        read.policies[fleet] = autoscaling.describe_policies(AutoScalingGroupName=name)[
            "ScalingPolicies"
        ]
        template = ec2.describe_launch_template_versions(
            LaunchTemplateId=out["launch_template_id"], Versions=["$Latest"]
        )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
        read.user_data[fleet] = base64.b64decode(template["UserData"]).decode()
        policy = iam.get_role_policy(RoleName=out["iam_role_name"], PolicyName="bakery-lifecycle")[
            "PolicyDocument"
        ]
        read.role_policies[fleet] = json.loads(policy) if isinstance(policy, str) else policy
        for key in ("security_group_id", "load_balancer_security_group_id"):
            (group,) = ec2.describe_security_groups(GroupIds=[out[key]])["SecurityGroups"]
            read.security_groups[out[key]] = group
    return read


def _leftovers(vpc: str) -> dict[str, list[str]]:
    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    return {
        "load balancer": [
            lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]
        ],
        "target group": [
            tg["TargetGroupName"] for tg in elbv2.describe_target_groups()["TargetGroups"]
        ],
        "security group": [
            g["GroupName"] for g in groups["SecurityGroups"] if g["GroupName"] != "default"
        ],
        "autoscaling group": [
            g["AutoScalingGroupName"]
            for g in boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        ],
    }


@pytest.fixture(scope="module")
def balanced(emulator_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    with pytest.MonkeyPatch.context() as mp:
        use_emulator(mp, emulator_server, managed_policies=True)
        ec2 = boto3.client("ec2")
        register_ami(
            ec2,
            "verified",
            {
                **CATALOG_TAGS,
                "bakery:image": "deepseek-r1-7b",
                "bakery:models": "deepseek-r1:7b",
                "bakery:verification": "passed",
            },
        )
        certificate = boto3.client("acm").request_certificate(DomainName="chat.example.com")[
            "CertificateArn"
        ]
        boto3.client("ssm").put_parameter(Name=SSM_SECRET, Type="SecureString", Value=SECRET)
        boto3.client("secretsmanager").create_secret(Name=SM_SECRET, SecretString=SECRET)
        vpc, subnets = default_network(ec2)
        common = {
            "image_name": "deepseek-r1-7b",
            "vpc_id": vpc,
            "subnet_ids": subnets,
            "create_load_balancer": True,
            "load_balancer_certificate_arn": certificate,
            "lifecycle_hook_heartbeat_timeout": HEARTBEAT_S,
            "root_volume_size": 100,  # moto launches nothing from a mapping without a size
        }
        work = tmp_path_factory.mktemp("balanced")
        tf = Terraform(
            stage(work, "emulator"),
            terraform_env(work, plugin_cache(tmp_path_factory.getbasetemp())),
        )
        tf.init()
        outputs = tf.apply(
            {
                "endpoint": emulator_server,
                "fleets": {
                    "signin": {
                        **common,
                        "name": "bakery-signin",
                        "oidc": _oidc(SSM_SECRET),
                        "min_size": 1,
                        "max_size": 3,
                        "desired_capacity": None,
                        "target_requests_per_instance": TARGET,
                    },
                    "pulls": {
                        **common,
                        "name": "bakery-pulls",
                        "oidc": _oidc(f"/aws/reference/secretsmanager/{SM_SECRET}"),
                        "allow_model_pulls": True,
                        "desired_capacity": 0,
                        "max_size": 0,
                    },
                },
            }
        )["fleets"]
        record = _read(outputs, certificate)
        tf.destroy()
        record.left = _leftovers(vpc)
        yield record


# -- the listeners ---------------------------------------------------------------------------


def test_https_listener_signs_in_then_forwards(balanced: Balanced) -> None:
    listener = balanced.listeners[("signin", 443)]
    assert listener["Protocol"] == "HTTPS"
    assert [c["CertificateArn"] for c in listener["Certificates"]] == [balanced.certificate]
    actions = sorted(listener["DefaultActions"], key=lambda a: a["Order"])
    assert [a["Type"] for a in actions] == ["authenticate-oidc", "forward"]
    assert actions[1]["TargetGroupArn"] == balanced.outputs["signin"]["target_group_arn"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Issuer", ISSUER),
        ("ClientId", "bakery-chat"),
        ("AuthorizationEndpoint", f"{ISSUER}/authorize"),
        ("TokenEndpoint", f"{ISSUER}/oauth/token"),
        ("UserInfoEndpoint", f"{ISSUER}/userinfo"),
        ("OnUnauthenticatedRequest", "authenticate"),
    ],
)
def test_oidc_settings(balanced: Balanced, key: str, expected: str) -> None:
    (signin,) = [
        a
        for a in balanced.listeners[("signin", 443)]["DefaultActions"]
        if a["Type"] == "authenticate-oidc"
    ]
    assert signin["AuthenticateOidcConfig"][key] == expected


def test_tls_policy(balanced: Balanced) -> None:
    assert balanced.listeners[("signin", 443)]["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"


def test_http_redirects_to_https(balanced: Balanced) -> None:
    (action,) = balanced.listeners[("signin", 80)]["DefaultActions"]
    assert action["Type"] == "redirect"
    redirect = action["RedirectConfig"]
    assert (redirect["Protocol"], redirect["Port"], redirect["StatusCode"]) == (
        "HTTPS",
        "443",
        "HTTP_301",
    )


def test_model_pulls_answer_403(balanced: Balanced) -> None:
    (rule,) = balanced.rules["signin"]
    (condition,) = rule["Conditions"]
    assert condition["Field"] == "path-pattern"
    assert sorted(condition.get("PathPatternConfig", {}).get("Values") or condition["Values"]) == [
        "/api/model",
        "/api/model/*",
    ]
    (action,) = rule["Actions"]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "403"


def test_model_pulls_pass_when_allowed(balanced: Balanced) -> None:
    assert balanced.rules["pulls"] == []


def test_secrets_manager_secret_signs_in_too(balanced: Balanced) -> None:
    actions = balanced.listeners[("pulls", 443)]["DefaultActions"]
    assert [a["Type"] for a in sorted(actions, key=lambda a: a["Order"])] == [
        "authenticate-oidc",
        "forward",
    ]


# -- the target group, the group, the hook, scaling -------------------------------------------


def test_target_group_checks_the_ui(balanced: Balanced) -> None:
    group = balanced.target_groups["signin"]
    assert (group["Protocol"], group["Port"]) == ("HTTP", UI_PORT)
    assert group["HealthCheckPath"] == "/api/tags"
    assert group["Matcher"]["HttpCode"] == "200"


def test_target_group_drains_for_a_generation(balanced: Balanced) -> None:
    attributes = balanced.target_group_attributes["signin"]
    assert attributes["deregistration_delay.timeout_seconds"] == "300"


def test_group_serves_in_the_target_group(balanced: Balanced) -> None:
    group = balanced.groups["signin"]
    assert group["TargetGroupARNs"] == [balanced.outputs["signin"]["target_group_arn"]]
    assert group["HealthCheckType"] == "ELB"


def test_launch_hook_abandons_by_default(balanced: Balanced) -> None:
    (hook,) = balanced.hooks["signin"]
    assert hook["LifecycleHookName"] == balanced.outputs["signin"]["lifecycle_hook_name"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hook["DefaultResult"] == "ABANDON"
    assert hook["HeartbeatTimeout"] == HEARTBEAT_S


def test_target_tracking_on_requests_per_instance(balanced: Balanced) -> None:
    (policy,) = balanced.policies["signin"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingConfiguration"]
    metric = config["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    lb = balanced.outputs["signin"]["load_balancer_arn"].split(":loadbalancer/")[1]
    tg = balanced.outputs["signin"]["target_group_arn"].rsplit(":", 1)[1]
    assert metric["ResourceLabel"] == f"{lb}/{tg}"
    assert float(config["TargetValue"]) == TARGET


@pytest.mark.parametrize(
    ("key", "expected"), [("MinSize", 1), ("MaxSize", 3), ("DesiredCapacity", 1)]
)
def test_scaling_group_starts_at_min(balanced: Balanced, key: str, expected: int) -> None:
    assert balanced.groups["signin"][key] == expected


def test_a_fixed_fleet_has_no_scaling_policy(balanced: Balanced) -> None:
    assert balanced.policies["pulls"] == []


def test_user_data_knows_its_hook_group_and_target_group(balanced: Balanced) -> None:
    script = balanced.user_data["signin"]
    outputs = balanced.outputs["signin"]
    assert f"readonly LIFECYCLE_HOOK_NAME='{outputs['lifecycle_hook_name']}'" in script
    assert f"readonly AUTOSCALING_GROUP_NAME='{outputs['autoscaling_group_name']}'" in script
    assert f"readonly TARGET_GROUP_ARN='{outputs['target_group_arn']}'" in script
    assert SECRET not in script


# -- the instance role -----------------------------------------------------------------------


def test_role_may_complete_exactly_its_own_lifecycle_action(balanced: Balanced) -> None:
    statements = {s["Sid"]: s for s in balanced.role_policies["signin"]["Statement"]}
    statement = statements["CompleteOwnLaunchLifecycleAction"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "autoscaling:CompleteLifecycleAction"
    assert statement["Resource"] == balanced.outputs["signin"]["autoscaling_group_arn"]
    assert set(statement) == {"Sid", "Effect", "Action", "Resource"}


def test_role_may_leave_exactly_its_own_target_group(balanced: Balanced) -> None:
    statements = {s["Sid"]: s for s in balanced.role_policies["signin"]["Statement"]}
    assert set(statements) == {
        "CompleteOwnLaunchLifecycleAction",
        "LeaveOwnTargetGroupOnSpotInterruption",
    }
    statement = statements["LeaveOwnTargetGroupOnSpotInterruption"]
    assert statement["Action"] == "elasticloadbalancing:DeregisterTargets"
    assert statement["Resource"] == balanced.outputs["signin"]["target_group_arn"]


# -- security groups -------------------------------------------------------------------------


def test_instances_take_the_ui_port_from_the_load_balancer_only(balanced: Balanced) -> None:
    outputs = balanced.outputs["signin"]
    (rule,) = balanced.security_groups[outputs["security_group_id"]]["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", UI_PORT, UI_PORT)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [
        outputs["load_balancer_security_group_id"]
    ]
    assert rule.get("IpRanges", []) == [] and rule.get("Ipv6Ranges", []) == []


@pytest.mark.parametrize("which", ["security_group_id", "load_balancer_security_group_id"])
def test_nothing_opens_ollamas_port(balanced: Balanced, which: str) -> None:
    group = balanced.security_groups[balanced.outputs["signin"][which]]
    opened = [
        r
        for r in group["IpPermissions"] + group["IpPermissionsEgress"]
        if (r["IpProtocol"] == "-1" and r.get("UserIdGroupPairs"))
        or r.get("FromPort", 0) <= 11434 <= r.get("ToPort", -1)
    ]
    assert opened == []


def test_load_balancer_takes_https_and_http(balanced: Balanced) -> None:
    group = balanced.security_groups[balanced.outputs["signin"]["load_balancer_security_group_id"]]
    ports = sorted((r["FromPort"], r["ToPort"]) for r in group["IpPermissions"])
    assert ports == [(80, 80), (443, 443)]


def test_load_balancer_reaches_only_the_ui_port(balanced: Balanced) -> None:
    outputs = balanced.outputs["signin"]
    (rule,) = balanced.security_groups[outputs["load_balancer_security_group_id"]][
        "IpPermissionsEgress"
    ]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", UI_PORT, UI_PORT)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [outputs["security_group_id"]]


@pytest.mark.parametrize(
    "kind", ["load balancer", "target group", "security group", "autoscaling group"]
)
def test_destroy_leaves_nothing(balanced: Balanced, kind: str) -> None:
    assert balanced.left[kind] == []
