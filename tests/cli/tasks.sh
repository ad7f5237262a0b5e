#!/usr/bin/env bash
# ikv-eval tasks: one JSON line per task with metrics in [0, 1], stderr and n; bad names exit 2.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
"$EVAL" tasks -m stories260K --tasks arc_easy,winogrande,lambada_openai,mmlu --limit 4 --json >"$TMP/t.jsonl" 2>"$TMP/err" \
  || { cat "$TMP/err"; bad "tasks run"; }
python3 - "$TMP/t.jsonl" <<'PY' && pass "JSON lines per task" || bad "JSON lines: $(cat "$TMP/t.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["task"] for r in rows] == ["arc_easy", "winogrande", "lambada_openai", "mmlu"], rows
for r in rows:
    assert 0 <= r["acc"] <= 1 and "acc_stderr" in r and r["n"] > 0, r
assert "acc_norm" in rows[0] and "perplexity" in rows[2]
assert rows[3]["n"] == 4 * 57  # --limit is per subject for MMLU
PY
grep -q "tokens evaluated vs" "$TMP/err" && pass "context reuse reported" || bad "no reuse line"
expect_error "unknown task" 'unknown task "arc_easyy"' -- "$EVAL" tasks -m stories260K --tasks arc_easyy
expect_error "negative limit" "--limit: must be at least 0, got -1" -- "$EVAL" tasks -m stories260K --tasks arc_easy --limit -1
finish
