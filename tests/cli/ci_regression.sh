#!/usr/bin/env bash
# The CI regression table: configs/ci.yaml against the checked-in results/baselines/ci.json
# (ikv-eval compare: PPL within 0.5%, accuracies within 1 point, nothing missing).
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
"$EVAL" run configs/ci.yaml --out "$TMP/ci" >/dev/null 2>"$TMP/run.log" || { cat "$TMP/run.log"; bad "ci run"; finish; }
"$EVAL" report --out "$TMP/ci" --latest --format json >"$TMP/ci.json"
if "$EVAL" compare "$TMP/ci.json" results/baselines/ci.json >"$TMP/compare.md"; then
  pass "ci.yaml matches results/baselines/ci.json ($(tail -1 "$TMP/compare.md"))"
else
  cat "$TMP/compare.md"
  bad "regression against results/baselines/ci.json"
fi
finish
