#!/usr/bin/env bash
# `make test`: start the loopback DynamoDB/SQS/Secrets Manager server, run every test, stop
# it (only if this run started it: a server someone else is using stays up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if scripts/moto.sh env >/dev/null 2>&1; then
    eval "$(scripts/moto.sh env)"
else
    eval "$(scripts/moto.sh start)"
    trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT
fi

cargo test --workspace --all-targets
# Doc examples too (cheap, and they must not rot).
cargo test --workspace --doc
# The deployment template's security and wiring properties (tests/infra).
scripts/tools.sh validate
.venv/bin/python -m unittest discover -s tests/infra
