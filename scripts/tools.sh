#!/usr/bin/env bash
# The Python-packaged tools the Makefile uses, installed once into the project's .venv (the
# same one scripts/moto.sh uses), so a machine with Rust, Python and make needs nothing else.
#
#   scripts/tools.sh lambda     cargo-lambda (brings zig for the arm64 cross-build)
#   scripts/tools.sh validate   cfn-lint and aws-sam-cli (sam), both run offline
#   scripts/tools.sh all        both
#
# Prints nothing on stdout; callers run .venv/bin/<tool>.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

# Pinned so CI and every developer lint with the same rules and build with the same toolchain.
CARGO_LAMBDA="cargo-lambda==1.9.2"
CFN_LINT="cfn-lint==1.58.0"
SAM_CLI="aws-sam-cli==1.170.0"

say() { echo "$*" >&2; }

ensure_venv() {
    if [[ ! -x "$venv/bin/python" ]]; then
        say "creating $venv"
        python3 -m venv "$venv"
    fi
}

# ensure PACKAGE==VERSION: installs it unless that version is already there (moto brings its
# own cfn-lint, so presence alone is not enough).
ensure() {
    local name="${1%%==*}" want="${1##*==}" have
    have="$("$venv/bin/python" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$name")"
    if [[ "$have" != "$want" ]]; then
        say "installing $1 into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$1"
    fi
}

ensure_venv
case "${1:-}" in
    lambda) ensure "$CARGO_LAMBDA" ;;
    validate)
        ensure "$CFN_LINT"
        ensure "$SAM_CLI"
        ;;
    all)
        ensure "$CARGO_LAMBDA"
        ensure "$CFN_LINT"
        ensure "$SAM_CLI"
        ;;
    *)
        say "usage: $0 lambda|validate|all"
        exit 2
        ;;
esac
