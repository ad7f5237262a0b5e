#!/usr/bin/env bash
# QuaRot W4A4KV4 from the command line and from YAML: perplexity runs (with and without IntactKV),
# the saved artifact re-rotates on load and gives the same PPL, and bad settings are one-line
# errors with exit code 2.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
M=(-m testbed-26M --ctx 256 --windows 2 --threads 2)
Q=(--quant quarot --wbits 4 --abits 4 --kv-bits 4)

fp=$("$EVAL" ppl "${M[@]}" --json | json_field ppl)
a=$("$EVAL" ppl "${M[@]}" "${Q[@]}" --json 2>/dev/null)
b=$("$EVAL" ppl "${M[@]}" "${Q[@]}" --intactkv bos --json 2>/dev/null)
[[ $(echo "$a" | python3 -c "import json,sys; q=json.load(sys.stdin)['quant']; print(q['method'], q['wbits'], q['abits'], q['group'], q['kv_bits'])") \
  == "quarot 4 4 -1 4" ]] && pass "--quant quarot: per-channel weights, A4, KV4 in --json" || bad "quarot --json: $a"
python3 - "$fp" "$(echo "$a" | json_field ppl)" "$(echo "$b" | json_field ppl)" <<'PY' && pass "W4A4KV4 PPL finite, above FP (IntactKV runs too)" || bad "W4A4KV4 PPL: fp $fp, $a, $b"
import math, sys
fp, q, ikv = map(float, sys.argv[1:])
sys.exit(0 if all(math.isfinite(x) for x in (q, ikv)) and q > fp and ikv > fp else 1)
PY

# The artifact stores the rotation seed and activation settings; loading re-rotates the FP model.
"$EVAL" quantize -m testbed-26M "${Q[@]}" -o "$TMP/q.quant.safetensors" >/dev/null 2>&1 || bad "quantize quarot"
c=$("$EVAL" ppl "${M[@]}" --quantized "$TMP/q.quant.safetensors" --kv-bits 4 --json)
[[ $(echo "$a" | json_field ppl) == $(echo "$c" | json_field ppl) ]] && pass "saved quarot weights give the same PPL" \
  || bad "saved != in-process: $(echo "$a" | json_field ppl) vs $(echo "$c" | json_field ppl)"

# The same from YAML (group is forced to -1 there).
cat >"$TMP/quarot.yaml" <<'YAML'
models: [{path: models/testbed-26M}]
quantizers: [{method: quarot, wbits: 4, abits: 4}]
kv_bits: [4]
intactkv: [none, bos]
tasks:
  ppl: {datasets: [wikitext2], ctx: 256, windows: 2}
YAML
"$EVAL" run "$TMP/quarot.yaml" --out "$TMP/run" --threads 2 >"$TMP/run.md" 2>"$TMP/run.log" || { cat "$TMP/run.log"; bad "yaml run"; }
grep -q "QuaRot W4A4 KV4" "$TMP/run.md" && grep -q "IntactKV_\[B\]" "$TMP/run.md" && pass "YAML quarot table" || bad "table: $(cat "$TMP/run.md")"
"$EVAL" report --out "$TMP/run" --latest --format json >"$TMP/run.json"
python3 - "$TMP/run.json" "$(echo "$a" | json_field ppl)" "$(echo "$b" | json_field ppl)" <<'PY' && pass "YAML run == CLI PPL" || bad "YAML PPL differs from the CLI's"
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["results"] if r["metric"] == "ppl"]
got = {r["intactkv"]: r["value"] for r in rows}
want = {"none": float(sys.argv[2]), "bos": float(sys.argv[3])}
sys.exit(0 if all(abs(got[k] - v) <= 1e-6 * v for k, v in want.items()) else 1)
PY

expect_error "quarot group" "group must be -1, not 128" -- "$EVAL" ppl -m testbed-26M "${Q[@]}" --group 128
expect_error "abits low" "abits: must be between 2 and 8, or 16, got 1" -- "$EVAL" ppl -m testbed-26M --quant quarot --abits 1
expect_error "abits high" "abits: must be between 2 and 8, or 16, got 9" -- "$EVAL" ppl -m testbed-26M --quant quarot --abits 9
expect_error "clip ratio 0" "clip-ratio: must be in (0, 1], got 0" -- "$EVAL" ppl -m testbed-26M "${Q[@]}" --clip-ratio 0
expect_error "clip ratio 1.5" "clip-ratio: must be in (0, 1], got 1.5" -- "$EVAL" ppl -m testbed-26M "${Q[@]}" --clip-ratio 1.5
expect_error "weight quantizer" "weight-quant 'awq' is not supported" -- "$EVAL" ppl -m testbed-26M "${Q[@]}" --weight-quant awq
expect_error "abits without quarot" "apply to --quant quarot only" -- "$EVAL" ppl -m testbed-26M --quant rtn --abits 4
expect_error "calibrate quarot group" "group must be -1" -- \
  "$BUILD/ikv-calibrate" -m testbed-26M "${Q[@]}" --group 64 -o "$TMP/c.ikv.safetensors"
finish
