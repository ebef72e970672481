#!/usr/bin/env bash
# `make test`: start the loopback DynamoDB/SQS/Secrets Manager server, run every test, stop
# it (only if this run started it: a server someone else is using stays up).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The console's browser test (tests/tests/console_browser.rs) needs Debian's Chromium and its
# WebDriver. CI installs them (as root); elsewhere the test skips with a message without them.
if [[ "${CI:-}" == "true" ]] && ! command -v chromedriver >/dev/null; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "CI=true: chromedriver is missing and installing it needs root" >&2
        exit 1
    fi
    echo "installing chromium and chromium-driver for the console's browser test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# shellcheck source=with-moto.sh
source scripts/with-moto.sh

# `portier/demo`: the demo's simulators, which the production binary leaves out.
cargo test --workspace --all-targets --features portier/demo
# Doc examples too (cheap, and they must not rot).
cargo test --workspace --doc --features portier/demo
# The deployment template's security and wiring properties (tests/infra).
scripts/tools.sh validate
.venv/bin/python -m unittest discover -s tests/infra
