# Sourced by test.sh and soak.sh: use the running loopback DynamoDB/SQS/Secrets Manager server,
# or start one and stop it on exit (only one this run started: a server someone else is using
# stays up).
if scripts/moto.sh env >/dev/null 2>&1; then
    eval "$(scripts/moto.sh env)"
else
    eval "$(scripts/moto.sh start)"
    trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT
fi
