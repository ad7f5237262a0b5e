#!/usr/bin/env bash
# Runs the libFuzzer targets briefly (10 s each); skipped when clang is missing.
set -euo pipefail
if ! command -v clang++ >/dev/null; then echo "SKIP: clang++ not installed"; exit 0; fi
exec scripts/fuzz.sh "${FUZZ_SECONDS:-10}" "${IKV_BUILD_DIR:-build}/fuzz"
