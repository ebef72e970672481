#!/usr/bin/env bash
# `make soak`: the full-size runs. Fault injection at 1 000 members, a SIGKILL crash during
# 1 000 webhooks, and the model-based sequence test at 5 000 sequences (portier serve) and 100
# through the Lambda handlers, with a new seed each time (printed; PORTIER_MBT_SEED=… repeats it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=with-moto.sh
source scripts/with-moto.sh

PORTIER_SOAK_MEMBERS=1000 PORTIER_CRASH_WEBHOOKS=1000 \
    cargo test --workspace --test fault_injection --test crash -- --nocapture
PORTIER_MBT_CASES="${PORTIER_MBT_CASES:-5000}" PORTIER_MBT_LAMBDA_CASES="${PORTIER_MBT_LAMBDA_CASES:-100}" \
    PORTIER_MBT_SEED="${PORTIER_MBT_SEED:-random}" \
    cargo test -p portier-testkit --test model_based -- --nocapture
