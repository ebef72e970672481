"""Security and wiring properties of infra/template.yaml.

Run by `make test` (and `make validate`) with the project's .venv, where aws-sam-cli brings
cfn-lint's YAML reader and the SAM translator: the checks run on the plain CloudFormation that
SAM deploys, so a role or policy SAM would add on its own is caught too.

    .venv/bin/python -m unittest discover -s tests/infra -v
"""

import copy
import json
import os
import pathlib
import re
import unittest

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
# The CLI runs on operators' machines, not in Lambda.
NOT_LAMBDAS = {"portier"}

# What each kind of resource may be used for by any function. Anything else (Scan, table or
# queue administration, other services) fails the test.
DATA_PLANE = {
    "logs": {"logs:CreateLogStream", "logs:PutLogEvents"},
    "dynamodb": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"},
    "sqs": {
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
    },
    "secretsmanager": {"secretsmanager:GetSecretValue"},
}
CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
SECRETS_ARN = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsPrefix}*"
)


def load_raw():
    template, errors = decode(str(TEMPLATE))
    if errors:
        raise AssertionError(f"{TEMPLATE} does not parse: {errors}")
    # Plain dicts and lists, without cfn-lint's node classes.
    return json.loads(json.dumps(template))


def translate(raw):
    """The template as SAM deploys it."""
    doc = copy.deepcopy(raw)
    doc["Transform"] = "AWS::Serverless-2016-10-31"
    for resource in doc["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"  # as `sam package` leaves it

    class NoManagedPolicies:
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, {}, NoManagedPolicies())


def listify(value):
    return value if isinstance(value, list) else [value]


def ref_target(value):
    """The logical id a Ref / GetAtt names, or None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else att.split(".")[0]
    return None


def evaluate(expr, values, conditions):
    """The few intrinsic functions the tenant-secret slots use, for given parameter values."""
    if isinstance(expr, str):
        return expr
    (fn, arg), = expr.items()
    ev = lambda e: evaluate(e, values, conditions)
    if fn == "Ref":
        return values[arg]
    if fn == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], arg)
    if fn == "Fn::Split":
        return ev(arg[1]).split(arg[0])
    if fn == "Fn::Select":
        return ev(arg[1])[int(arg[0])]
    if fn == "Fn::Join":
        return arg[0].join(ev(e) for e in arg[1])
    if fn == "Fn::Equals":
        return ev(arg[0]) == ev(arg[1])
    if fn == "Fn::Not":
        return not ev(arg[0])
    if fn == "Condition":
        return ev(conditions[arg])
    raise AssertionError(f"unexpected {fn}")


class Template(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.raw = load_raw()
        cls.cfn = translate(cls.raw)
        cls.resources = cls.cfn["Resources"]
        cls.functions = {
            k: v for k, v in cls.raw["Resources"].items() if v.get("Type") == "AWS::Serverless::Function"
        }

    def of_type(self, kind):
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def env(self, name, fn):
        merged = dict(self.raw.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
        merged.update(fn["Properties"].get("Environment", {}).get("Variables", {}))
        return merged

    # ── functions ─────────────────────────────────────────────────────────────────────────

    def test_every_function_crate_is_declared_and_built_with_cargo_lambda(self):
        crates = {
            p.parent.name
            for p in (ROOT / "functions").glob("*/Cargo.toml")
            if p.parent.name not in NOT_LAMBDAS
        }
        declared = {}
        for name, fn in self.functions.items():
            props = fn["Properties"]
            code = (TEMPLATE.parent / props["CodeUri"]).resolve()
            self.assertTrue((code / "Cargo.toml").is_file(), f"{name}: CodeUri {props['CodeUri']} is no crate")
            declared[code.name] = name
            self.assertEqual(fn.get("Metadata", {}).get("BuildMethod"), "rust-cargolambda", name)
        self.assertEqual(set(declared), crates, "every Lambda crate under functions/ has one function")
        glob = self.raw["Globals"]["Function"]
        for name, fn in self.functions.items():
            props = {**glob, **fn["Properties"]}
            self.assertEqual(props["Runtime"], "provided.al2023", name)
            self.assertEqual(props["Architectures"], ["arm64"], name)
            self.assertEqual(props["Handler"], "bootstrap", name)

    def test_every_function_has_its_own_role_and_log_group_with_retention(self):
        roles, groups = set(), set()
        for name, fn in self.functions.items():
            props = fn["Properties"]
            self.assertNotIn("Policies", props, f"{name}: permissions belong in its role")
            role = ref_target(props.get("Role"))
            self.assertIsNotNone(role, f"{name}: without Role SAM adds managed policies on '*'")
            self.assertEqual(self.raw["Resources"][role]["Type"], "AWS::IAM::Role")
            group = ref_target(props["LoggingConfig"]["LogGroup"])
            self.assertIn("RetentionInDays", self.raw["Resources"][group]["Properties"], name)
            self.assertNotIn(role, roles, f"{name} shares its role")
            self.assertNotIn(group, groups, f"{name} shares its log group")
            roles.add(role)
            groups.add(group)
        # No other role or policy exists, generated or declared.
        self.assertEqual(set(self.of_type("AWS::IAM::Role")), roles)
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"):
            self.assertEqual(self.of_type(kind), {}, kind)

    def test_every_role_names_only_its_own_resources_and_actions(self):
        queue_consumers = {
            ref_target(m["Properties"]["FunctionName"]): ref_target(m["Properties"]["EventSourceArn"])
            for m in self.of_type("AWS::Lambda::EventSourceMapping").values()
        }
        for name, fn in self.functions.items():
            props = fn["Properties"]
            role = self.resources[ref_target(props["Role"])]["Properties"]
            self.assertNotIn("ManagedPolicyArns", role, name)
            self.assertEqual(
                role["AssumeRolePolicyDocument"]["Statement"],
                [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            )
            own_logs = ref_target(props["LoggingConfig"]["LogGroup"])
            uses_secrets = "SECRETS_PREFIX" in self.env("SECRETS_PREFIX", fn)
            granted_secrets = False
            for policy in role["Policies"]:
                for st in policy["PolicyDocument"]["Statement"]:
                    where = f"{name}: {st}"
                    self.assertEqual(st["Effect"], "Allow", where)
                    self.assertNotIn("NotAction", st, where)
                    self.assertNotIn("NotResource", st, where)
                    actions = set(listify(st["Action"]))
                    services = {a.split(":")[0] for a in actions}
                    self.assertEqual(len(services), 1, f"{where}: one service per statement")
                    service = services.pop()
                    self.assertIn(service, DATA_PLANE, where)
                    self.assertLessEqual(actions, DATA_PLANE[service], where)
                    resources = listify(st["Resource"])
                    self.assertEqual(len(resources), 1, where)
                    resource = resources[0]
                    if service == "logs":
                        self.assertEqual(ref_target(resource), own_logs, f"{where}: only its own logs")
                    elif service == "dynamodb":
                        self.assertEqual(resource, {"Fn::GetAtt": ["Table", "Arn"]}, where)
                    elif service == "sqs":
                        self.assertEqual(resource, {"Fn::GetAtt": ["WorkQueue", "Arn"]}, f"{where}: never the DLQ")
                        if actions & CONSUME:
                            self.assertEqual(queue_consumers.get(name), "WorkQueue", f"{where}: only the consumer receives")
                    elif service == "secretsmanager":
                        self.assertEqual(resource, {"Fn::Sub": SECRETS_ARN}, where)
                        granted_secrets = True
            self.assertEqual(
                granted_secrets, uses_secrets, f"{name}: secret access iff it reads secrets (SECRETS_PREFIX)"
            )

    def test_http_functions_only_send_and_the_api_may_invoke_only_its_routes(self):
        for perm_name, perm in self.of_type("AWS::Lambda::Permission").items():
            props = perm["Properties"]
            self.assertEqual(props["Action"], "lambda:InvokeFunction")
            self.assertIn(props["Principal"], {"apigateway.amazonaws.com", "events.amazonaws.com"})
            self.assertIn("SourceArn", props, f"{perm_name}: invocation limited to one source")
            if props["Principal"] == "apigateway.amazonaws.com":
                arn = props["SourceArn"]["Fn::Sub"]
                self.assertEqual(arn[1]["__ApiId__"], {"Ref": "Api"})
                fn = ref_target(props["FunctionName"])
                if fn == "ConsoleFunction":
                    # The console's own paths only; it authenticates every request itself.
                    self.assertRegex(arn[0], r"/(GET|\*)/(console|api/v1)(/|$)", perm_name)
                    continue
                self.assertRegex(arn[0], r"/POST/hooks/[a-z]+/", perm_name)
                role = self.resources[ref_target(self.resources[fn]["Properties"]["Role"])]
                actions = {a for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"] for a in listify(s["Action"])}
                self.assertFalse(actions & CONSUME, f"{fn}: an ingress may only send to the queue")
                self.assertNotIn("dynamodb:DeleteItem", actions, fn)

    # ── queue, table, schedule, alarms ────────────────────────────────────────────────────

    def test_queue_is_fifo_with_a_fifo_dead_letter_queue_and_a_safe_visibility(self):
        q = self.resources["WorkQueue"]["Properties"]
        self.assertIs(q["FifoQueue"], True)
        self.assertIs(q["ContentBasedDeduplication"], False, "Portier sets deduplication ids")
        self.assertEqual(q["RedrivePolicy"]["deadLetterTargetArn"], {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
        self.assertEqual(q["RedrivePolicy"]["maxReceiveCount"], {"Ref": "MaxReceiveCount"})
        dlq = self.resources["DeadLetterQueue"]["Properties"]
        self.assertIs(dlq["FifoQueue"], True)
        self.assertGreaterEqual(dlq["MessageRetentionPeriod"], 1209600, "keep dead letters 14 days")
        worker = self.resources["WorkerFunction"]["Properties"]
        self.assertGreaterEqual(q["VisibilityTimeout"], 6 * worker["Timeout"])

    def test_worker_reads_small_batches_with_partial_failures_and_bounded_concurrency(self):
        (mapping,) = self.of_type("AWS::Lambda::EventSourceMapping").values()
        props = mapping["Properties"]
        self.assertEqual(props["FunctionName"], {"Ref": "WorkerFunction"})
        self.assertLessEqual(props["BatchSize"], 10)
        self.assertEqual(props["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(props["ScalingConfig"]["MaximumConcurrency"], {"Ref": "WorkerMaxConcurrency"})
        param = self.raw["Parameters"]["WorkerMaxConcurrency"]
        self.assertLessEqual(param["Default"], param["MaxValue"])

    def test_table_matches_the_store(self):
        t = self.resources["Table"]
        props = t["Properties"]
        self.assertEqual(t.get("DeletionPolicy"), "Retain")
        self.assertEqual(props["BillingMode"], "PAY_PER_REQUEST")
        self.assertIs(props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], True)
        # shared/src/store/dynamo.rs: keys pk/sk, TTL attribute `ttl`.
        self.assertEqual(props["TimeToLiveSpecification"], {"AttributeName": "ttl", "Enabled": True})
        self.assertEqual(
            props["KeySchema"],
            [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        self.assertNotIn("StreamSpecification", props)
        store = (ROOT / "shared/src/store/dynamo.rs").read_text()
        self.assertIn('attribute_name("ttl")', store)

    def test_tick_runs_every_minute_without_overlapping_retries(self):
        rules = [r["Properties"] for r in self.of_type("AWS::Events::Rule").values()]
        tick = [r for r in rules if r["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TickFunction", "Arn"]}]
        self.assertEqual([r["ScheduleExpression"] for r in tick], ["rate(1 minute)"])
        config = self.functions["TickFunction"]["Properties"]["EventInvokeConfig"]
        self.assertEqual(config["MaximumRetryAttempts"], 0)

    def test_dead_letters_raise_an_alarm(self):
        alarms = [a["Properties"] for a in self.of_type("AWS::CloudWatch::Alarm").values()]
        dlq = [
            a
            for a in alarms
            if a["Namespace"] == "AWS/SQS"
            and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
        ]
        self.assertEqual(len(dlq), 1)
        self.assertEqual(dlq[0]["MetricName"], "ApproximateNumberOfMessagesVisible")
        self.assertEqual((dlq[0]["Threshold"], dlq[0]["ComparisonOperator"]), (0, "GreaterThanThreshold"))
        self.assertEqual(dlq[0]["AlarmActions"], [{"Ref": "AlarmTopic"}])

    def test_the_functions_that_call_providers_share_the_rate_limits_by_the_worker_concurrency(self):
        # The worker and the resync call the source and the providers; each container divides
        # every limit by WORKER_MAX_CONCURRENCY + 1, which must be the mapping's real maximum.
        callers = {"WorkerFunction", "ResyncFunction", "ConsoleFunction"}
        for name, fn in self.functions.items():
            value = self.env("WORKER_MAX_CONCURRENCY", fn).get("WORKER_MAX_CONCURRENCY")
            if name in callers:
                self.assertEqual(value, {"Ref": "WorkerMaxConcurrency"}, name)
            else:
                self.assertIsNone(value, f"{name} calls no provider")
        scaling = self.functions["WorkerFunction"]["Properties"]["Events"]["Queue"]["Properties"]["ScalingConfig"]
        self.assertEqual(scaling["MaximumConcurrency"], {"Ref": "WorkerMaxConcurrency"})

    def test_functions_read_secrets_only_under_the_stacks_prefix(self):
        for name, fn in self.functions.items():
            prefix = fn["Properties"].get("Environment", {}).get("Variables", {}).get("SECRETS_PREFIX")
            if prefix is not None:
                self.assertEqual(prefix, {"Ref": "SecretsPrefix"}, name)
        self.assertRegex(self.raw["Parameters"]["SecretsPrefix"]["AllowedPattern"], r"/\$$")

    def test_one_secret_per_listed_tenant_named_under_the_prefix_and_holding_no_credential(self):
        params = self.raw["Parameters"]
        pattern = params["TenantIds"]["AllowedPattern"]
        ids = [f"space-{i}" for i in range(11)]
        for tenants in ["", "space-berlin", "a,b_2,C-3", ",".join(ids[:10])]:
            self.assertRegex(tenants, pattern)
            values = {"TenantIds": tenants, "SecretsPrefix": "portier/", "AWS::StackName": "portier"}
            created = []
            for name, secret in self.of_type("AWS::SecretsManager::Secret").items():
                self.assertEqual(secret["DeletionPolicy"], "Retain", name)
                self.assertEqual(secret["UpdateReplacePolicy"], "Retain", name)
                props = secret["Properties"]
                # Only ever the empty object: the operator puts the value (docs/deploy.md).
                self.assertEqual(props["SecretString"], "{}", name)
                if evaluate(self.cfn["Conditions"][secret["Condition"]], values, self.cfn["Conditions"]):
                    created.append(evaluate(props["Name"], values, self.cfn["Conditions"]))
            expected = [f"portier/{t}" for t in tenants.split(",") if t]
            self.assertEqual(sorted(created), sorted(expected), tenants)
        for bad in [",".join(ids), "a,,b", "a b", "a,", "portier/x"]:
            self.assertNotRegex(bad, pattern)

    def test_no_plaintext_secret_anywhere(self):
        text = TEMPLATE.read_text()
        for pattern in (r"(?i)password\s*:", r"(?i)client_secret\s*:", r"AKIA[0-9A-Z]{16}"):
            self.assertIsNone(re.search(pattern, text), pattern)


if __name__ == "__main__":
    unittest.main()
