#!/usr/bin/env bash
# `make build`: every Lambda function as an arm64 zip (cargo-lambda, zig from PyPI), then the
# zip sizes against the 8 MB target.
#
# The functions are the crates under functions/ except the portier CLI; the template declares
# the same set (tests/infra/test_template.py checks it). Zips land in
# $CARGO_TARGET_DIR/lambda/<function>/bootstrap.zip (target/ when unset).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

LIMIT_BYTES=$((8 * 1024 * 1024))

scripts/tools.sh lambda
export PATH="$root/.venv/bin:$PATH" # cargo finds `cargo-lambda`, cargo-lambda finds zig

mapfile -t functions < <(scripts/lambda-functions.sh)
out="${CARGO_TARGET_DIR:-$root/target}/lambda"
packages=()
for f in "${functions[@]}"; do packages+=(--package "$f"); done

cargo lambda build --release --arm64 --output-format zip --lambda-dir "$out" "${packages[@]}"

echo
printf '%-20s %12s   %s\n' function "zip bytes" "of the 8 MB target"
over=0
for f in "${functions[@]}"; do
    zip="$out/$f/bootstrap.zip"
    if [[ ! -f "$zip" ]]; then
        echo "no zip for $f at $zip" >&2
        exit 1
    fi
    size=$(stat -c %s "$zip")
    printf '%-20s %12d   %5.1f %%\n' "$f" "$size" "$(awk "BEGIN { print 100 * $size / $LIMIT_BYTES }")"
    if ((size > LIMIT_BYTES)); then over=1; fi
done
if ((over)); then
    echo "a zip is over 8 MB" >&2
    exit 1
fi
