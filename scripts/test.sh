#!/usr/bin/env bash
# `make test`: start the loopback DynamoDB/SQS server, run every test, stop the server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/moto.sh start)"
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

cargo test --workspace --all-targets
# Doc examples too (cheap, and they must not rot).
cargo test --workspace --doc
