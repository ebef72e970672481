#!/usr/bin/env bash
# `make test`: start the loopback DynamoDB/SQS/Secrets Manager server, run every test, stop it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

cargo test --workspace --all-targets
# Doc examples too (cheap, and they must not rot).
cargo test --workspace --doc
# The deployment template's security and wiring properties (tests/infra).
scripts/tools.sh validate
.venv/bin/python -m unittest discover -s tests/infra
