#!/usr/bin/env bash
# The Lambda functions: every crate under functions/ except the portier CLI, one name a line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for manifest in "$root"/functions/*/Cargo.toml; do
    name="$(basename "$(dirname "$manifest")")"
    [[ "$name" == portier ]] || echo "$name"
done
