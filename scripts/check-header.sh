#!/usr/bin/env bash
# Fails when the committed C header include/pmp.h is stale or not committed.
#
# A build runs build.rs, which regenerates include/pmp.h with cbindgen; the header must then
# be identical to the committed one. Run from anywhere inside the repository.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
header=include/pmp.h

cargo build --lib --quiet

if ! git ls-files --error-unmatch "$header" >/dev/null 2>&1; then
    echo "error: $header is not tracked by git: add and commit it" >&2
    exit 1
fi
if ! git diff --exit-code HEAD -- "$header"; then
    echo "error: $header is stale: commit the regenerated header (diff above)" >&2
    exit 1
fi
echo "$header is up to date"
