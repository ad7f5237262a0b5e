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
for r in rows:  # the forward tokens each task ran, and how fast
    assert r["tokens_run"] > 0 and r["seconds"] > 0 and abs(r["tokens_per_second"] * r["seconds"] - r["tokens_run"]) < 1e-6 * r["tokens_run"], r
PY
grep -q "tokens evaluated vs" "$TMP/err" && pass "context reuse reported" || bad "no reuse line"
# Every request's loglikelihood is the same bits in processes with 1 and 2 threads and with 64, 7
# and 1 documents per scorer call.
for run in "1 64" "2 7" "2 1"; do
  set -- $run
  "$EVAL" tasks -m testbed-26M --tasks arc_easy,winogrande,lambada_openai --limit 6 --threads "$1" --batch "$2" \
    --loglik-out "$TMP/ll-$1-$2.txt" >/dev/null 2>"$TMP/err" || { cat "$TMP/err"; bad "tasks --threads $1 --batch $2"; }
done
[[ $(wc -l <"$TMP/ll-1-64.txt") -eq $((6 * 4 + 6 * 2 + 6)) ]] && pass "--loglik-out: one line per request" ||
  bad "--loglik-out has $(wc -l <"$TMP/ll-1-64.txt") lines"
cmp -s "$TMP/ll-1-64.txt" "$TMP/ll-2-7.txt" && cmp -s "$TMP/ll-1-64.txt" "$TMP/ll-2-1.txt" &&
  pass "loglikelihoods bit-identical across threads and batch sizes" ||
  bad "loglikelihoods differ: $(diff "$TMP/ll-1-64.txt" "$TMP/ll-2-1.txt" | head -4)"
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
