#!/usr/bin/env bash
# `make test`: start the loopback DynamoDB/SQS/Secrets Manager server, run every test, stop
# it (only if this run started it: a server someone else is using stays up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=with-moto.sh
source scripts/with-moto.sh

cargo test --workspace --all-targets
# Doc examples too (cheap, and they must not rot).
cargo test --workspace --doc
# The deployment template's security and wiring properties (tests/infra).
scripts/tools.sh validate
.venv/bin/python -m unittest discover -s tests/infra
