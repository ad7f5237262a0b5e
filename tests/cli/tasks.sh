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

# The paper's and lm-eval's settings: no <bos>, lm-eval's MMLU prompt; the scores move.
"$EVAL" tasks -m stories260K --tasks arc_easy,mmlu --limit 2 --bos never --mmlu-format lm-eval --json >"$TMP/nb.jsonl" \
  2>"$TMP/err" || { cat "$TMP/err"; bad "tasks --bos never --mmlu-format lm-eval"; }
"$EVAL" tasks -m stories260K --tasks arc_easy,mmlu --limit 2 --json >"$TMP/b.jsonl" 2>/dev/null
python3 - "$TMP/b.jsonl" "$TMP/nb.jsonl" <<'PY' && pass "--bos never changes the scores" || bad "--bos never"
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
assert [r["task"] for r in b] == ["arc_easy", "mmlu"] and a != b, (a, b)
PY
expect_error "--bos never with IntactKV" "bos never: IntactKV prefixes start with <bos>" -- \
  "$EVAL" tasks -m stories260K --tasks arc_easy --bos never --intactkv bos
expect_error "--bos sometimes" "bos: sometimes not in" -- "$EVAL" tasks -m stories260K --tasks arc_easy --bos sometimes

# configs/paper-table3.yaml on testbed-26M as a stand-in: the paper's seven QA columns, acc_norm
# where the paper's convention has it, and their Avg, named in the legend.
cat >"$TMP/table3.yaml" <<YAML
extends: $(pwd)/configs/paper-table3.yaml
models: [{name: testbed-26M, path: models/testbed-26M}]
quantizers: [fp, {method: rtn, wbits: 3, group: 128}]
tasks:
  qa: {limit: 4}
YAML
"$EVAL" run "$TMP/table3.yaml" --out "$TMP/t3" >"$TMP/t3.md" 2>"$TMP/t3.err" || { cat "$TMP/t3.err"; bad "paper-table3 run"; }
head_line=$(grep -m1 '^| Method' "$TMP/t3.md")
want='| Method | openbookqa (acc_norm) | winogrande | arc_easy | arc_challenge (acc_norm) | boolq | hellaswag (acc_norm) | lambada_openai | Avg |'
[[ "$head_line" == "$want" ]] && pass "paper-table3: the paper's columns" || bad "paper-table3 header: $head_line"
grep -q "Avg: mean of openbookqa, winogrande, arc_challenge, arc_easy, boolq, hellaswag, lambada_openai (the paper's zero-shot suite)" \
  "$TMP/t3.md" && pass "paper-table3: Avg named" || bad "paper-table3 legend: $(tail -2 "$TMP/t3.md")"
grep -q "IntactKV_\[P\]" "$TMP/t3.md" && bad "paper-table3 has IntactKV_[P] rows" || pass "paper-table3: no IntactKV_[P] rows"
"$EVAL" report --out "$TMP/t3" --latest >"$TMP/t3-again.md"
cmp -s "$TMP/t3.md" "$TMP/t3-again.md" && pass "report reproduces the run's table" ||
  bad "report differs: $(diff "$TMP/t3.md" "$TMP/t3-again.md" | head -5)"
finish
