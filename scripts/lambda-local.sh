#!/usr/bin/env bash
# Local Lambda check (`make lambda-local`): every function runs under `cargo lambda watch` (the
# Lambda runtime API emulator) and answers `cargo lambda invoke --data-file events/…` for its
# sample events, with DynamoDB, SQS FIFO and Secrets Manager on the loopback moto server and
# Nexudus and Tapkey simulated by `portier serve --demo`. Nothing leaves 127.0.0.1.
#
# Checks: the ingress answers 202 to a signed webhook (secret from Secrets Manager) and queues
# it; the worker works the sample batch with no failed record and the grant exists at the
# Tapkey simulator; the tick answers with what it enqueued. Then prints each function's cold
# start init (`init_ms`, logged by the binary from reading its environment to ready).
#
# LAMBDA_LOCAL_RELEASE=1 runs release builds (what the init figures in docs/deploy.md use).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "lambda-local: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

scripts/tools.sh lambda
export PATH="$root/.venv/bin:$PATH"
target="${CARGO_TARGET_DIR:-$root/target}"
profile_flag=()
profile=debug
if [[ "${LAMBDA_LOCAL_RELEASE:-}" == 1 ]]; then
    profile_flag=(--release)
    profile=release
fi

work="$(mktemp -d)"
pids=()
started_moto=0
cleanup() {
    for pid in "${pids[@]}"; do
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    done
    if ((started_moto)); then scripts/moto.sh stop >/dev/null 2>&1 || true; fi
    if [[ -n "${LAMBDA_LOCAL_KEEP:-}" ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
    .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Python, not curl: a clean machine has Python but maybe no curl.
fetch() { # fetch URL [any] → the body on stdout; with `any`, any HTTP answer counts as up
    python3 - "$@" <<'PY'
import sys, urllib.error, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except urllib.error.HTTPError:
    sys.exit(0 if sys.argv[2:] == ["any"] else 1)
PY
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs="$1" what="$2"
    shift 2
    for _ in $(seq 1 $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$what did not come up within ${secs}s"
}

# ── loopback AWS ──────────────────────────────────────────────────────────────────────────
if ! scripts/moto.sh env >/dev/null 2>&1; then started_moto=1; fi
eval "$(scripts/moto.sh start)"
export AWS_ENDPOINT_URL="$PORTIER_TEST_AWS_ENDPOINT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE

# ── the demo's simulators ─────────────────────────────────────────────────────────────────
say "building portier and the functions ($profile)"
functions=()
while read -r f; do functions+=("$f"); done < <(scripts/lambda-functions.sh)
packages=(--package portier --features portier/demo)
for f in "${functions[@]}"; do packages+=(--package "$f"); done
cargo build "${profile_flag[@]}" "${packages[@]}"
portier="$target/$profile/portier"

demo_port="$(free_port)"
setsid "$portier" serve --demo --listen "127.0.0.1:$demo_port" --data "$work/demo" >"$work/demo.log" 2>&1 </dev/null &
pids+=($!)
wait_for 30 "portier serve --demo" fetch "http://127.0.0.1:$demo_port/healthz"
tapkey_url="$(sed -n 's/^ *Tapkey *\(http[^ ]*\).*/\1/p' "$work/demo.log" | head -1)"
[[ -n "$tapkey_url" ]] || fail "no Tapkey simulator URL in the demo's output"

# ── the stack's resources, as the template makes them ────────────────────────────────────
run_id="local-$(date +%s)-$$"
prefix="portier-$run_id/"
read -r table queue_url < <(
    .venv/bin/python - "$run_id" "$prefix" "$work/demo/demo-secrets.json" <<'PY'
import json, sys, boto3
run_id, prefix, secrets_file = sys.argv[1:]
ddb = boto3.client("dynamodb")
table = f"portier-{run_id}"
ddb.create_table(
    TableName=table,
    AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    BillingMode="PAY_PER_REQUEST",
)
ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
sqs = boto3.client("sqs")
fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
dlq = sqs.create_queue(QueueName=f"portier-{run_id}-dlq.fifo", Attributes=fifo)["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 10})
queue = sqs.create_queue(QueueName=f"portier-{run_id}.fifo", Attributes={**fifo, "RedrivePolicy": redrive})["QueueUrl"]
with open(secrets_file) as f:
    secret = f.read()
# The demo's two tenants (coworking and self-storage) share one set of simulator credentials.
for tenant in ("demo", "demo-storage"):
    boto3.client("secretsmanager").create_secret(Name=f"{prefix}{tenant}", SecretString=secret)
# The console's admin token: the key PORTIER_ADMIN_TOKEN of <prefix>.admin (the demo's holds it).
boto3.client("secretsmanager").create_secret(Name=f"{prefix}.admin", SecretString=secret)
print(table, queue)
PY
)
say "table $table, queue $queue_url, secret ${prefix}demo"
"$portier" config push --table "$table" --config "$work/demo/demo.toml"

# ── the functions under the runtime emulator ─────────────────────────────────────────────
lambda_port="$(free_port)"
export TABLE_NAME="$table" QUEUE_URL="$queue_url" SECRETS_PREFIX="$prefix" RUST_LOG=info
setsid cargo lambda watch "${profile_flag[@]}" -A 127.0.0.1 -P "$lambda_port" >"$work/watch.log" 2>&1 </dev/null &
pids+=($!)
wait_for 60 "cargo lambda watch" fetch "http://127.0.0.1:$lambda_port/" any

invoke() { # invoke FUNCTION EVENT-FILE → the function's answer on stdout
    local out
    if ! out="$(cargo lambda invoke "$1" -A 127.0.0.1 -P "$lambda_port" --data-file "$2" 2>"$work/invoke.err")"; then
        cat "$work/invoke.err" >&2
        tail -n 30 "$work/watch.log" >&2
        fail "$1 did not answer $2"
    fi
    echo "$out"
}

check() { # check DESCRIPTION PYTHON-EXPRESSION-ON-a JSON
    if ! .venv/bin/python -c "import json,sys; a=json.loads(sys.argv[1]); sys.exit(0 if ($2) else 1)" "$3"; then
        fail "$1: $3"
    fi
    say "ok: $1"
}

answer="$(invoke nexudus-ingress events/nexudus-access-control-update.json)"
check "nexudus-ingress answers 202 to the signed sample webhook" 'a["statusCode"] == 202' "$answer"
depth="$(.venv/bin/python -c 'import boto3,sys; print(boto3.client("sqs").get_queue_attributes(QueueUrl=sys.argv[1], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])' "$queue_url")"
check "the webhook is on the FIFO queue" 'a == 1' "$depth"

answer="$(invoke worker events/worker-sqs-batch.json)"
check "worker reports no failed record" 'a["batchItemFailures"] == []' "$answer"
state="$(fetch "${tapkey_url%/api/v1}/_sim/state")"
check "the Tapkey simulator holds the demo customer's grant" \
    'any(g["contact"]["identifier"] == "anna@example.com" for g in a["grants"])' "$state"

answer="$(invoke tick events/tick-schedule.json)"
check "tick answers with what it enqueued" 'isinstance(a["enqueued"], int)' "$answer"

# The Kinnovis sample is dated and Standard Webhooks allows ±5 minutes: sign it afresh, as
# `portier send` does, with the demo location's secret.
.venv/bin/python - events/kinnovis-booking-created.json "$work/kinnovis-event.json" <<'PY'
import base64, hashlib, hmac, json, sys, time, uuid
src, dst = sys.argv[1:]
event = json.load(open(src))
secret = base64.b64decode("ZGVtby1raW5ub3Zpcy1zaWduaW5nLWtleS0zMmJ5dGVz")  # DEMO_KINNOVIS_SECRET
msg_id, ts = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
mac = hmac.new(secret, f"{msg_id}.{ts}.{event['body']}".encode(), hashlib.sha256).digest()
event["headers"].update({"webhook-id": msg_id, "webhook-timestamp": ts,
                         "webhook-signature": "v1," + base64.b64encode(mac).decode()})
json.dump(event, open(dst, "w"))
PY
answer="$(invoke kinnovis-ingress "$work/kinnovis-event.json")"
check "kinnovis-ingress answers 202 to a freshly signed sample booking" 'a["statusCode"] == 202' "$answer"

echo '{"tenant": "demo", "dry_run": true}' >"$work/resync-dry.json"
answer="$(invoke resync "$work/resync-dry.json")"
check "resync plans the demo tenant without changing anything" 'a["tenants"][0]["dry_run"] is True' "$answer"

# The console's API through the HTTP API event, with the admin token (and 401 without it).
.venv/bin/python - "$work/demo/demo-secrets.json" "$work" events/nexudus-access-control-update.json <<'PY'
import copy, json, sys
token = json.load(open(sys.argv[1]))["PORTIER_ADMIN_TOKEN"]
sample = json.load(open(sys.argv[3]))  # an HTTP API event as API Gateway sends it
def event(auth):
    e = copy.deepcopy(sample)
    e.update({"routeKey": "ANY /api/v1/{proxy+}", "rawPath": "/api/v1/status", "rawQueryString": "",
              "body": None, "isBase64Encoded": False, "pathParameters": {"proxy": "status"},
              "queryStringParameters": {}})
    e["headers"] = {"host": "abc.execute-api.us-east-1.amazonaws.com"}
    if auth:
        e["headers"]["authorization"] = f"Bearer {token}"
    e["requestContext"]["http"].update({"method": "GET", "path": "/api/v1/status"})
    e["requestContext"]["routeKey"] = e["routeKey"]
    return e
json.dump(event(True), open(f"{sys.argv[2]}/console-status.json", "w"))
json.dump(event(False), open(f"{sys.argv[2]}/console-anonymous.json", "w"))
PY
answer="$(invoke console "$work/console-status.json")"
check "console answers GET /api/v1/status with the admin token" 'a["statusCode"] == 200 and "tenants" in json.loads(a["body"])' "$answer"
answer="$(invoke console "$work/console-anonymous.json")"
check "console answers 401 without it" 'a["statusCode"] == 401' "$answer"

# ── cold start figures ────────────────────────────────────────────────────────────────────
echo
echo "cold start init under cargo lambda watch ($profile build; init_ms = environment read → ready):"
# The emulator logs `starting lambda function instance function="NAME"`, then the binary's
# own JSON lines: attribute each `warmed` line to the function started last.
.venv/bin/python - "$work/watch.log" "${functions[@]}" <<'PY'
import json, re, sys
path, wanted = sys.argv[1], sys.argv[2:]
current, found = None, {}
for line in open(path, errors="replace"):
    m = re.search(r'starting lambda function instance function="([^"]+)"', line)
    if m:
        current = m.group(1)
        continue
    if line.startswith("{") and '"warmed"' in line and current and current not in found:
        fields = json.loads(line).get("fields", {})
        found[current] = (fields.get("init_ms"), fields.get("warm_ms"))
for f in wanted:
    init, warm = found.get(f, ("?", "?"))
    print(f"  {f:<18} init_ms {init:>5}   (warm-up {warm} ms)")
missing = [f for f in wanted if f not in found]
sys.exit(f"no init figure for {missing}" if missing else 0)
PY
