#!/usr/bin/env bash
# GPTQ from the command line: a calibrated artifact is written with per-layer progress, reloads and
# evaluates; act-order stores a permutation per linear that loads back (and is checked); calibrating
# on an evaluation test set is refused.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
Q=(--quant gptq --wbits 3 --calib-samples 16 --calib-len 256)
P=(--ctx 256 --windows 4 --json)
ppl_in_range() {  # ppl_in_range NAME PPL FP: finite, above FP, not absurd
  python3 -c "import math,sys; p=float('$2'); sys.exit(0 if math.isfinite(p) and float('$3') < p < 4 * float('$3') else 1)" \
    && pass "$1 ($2, FP $3)" || bad "$1: PPL $2 vs FP $3"
}

fp=$("$EVAL" ppl -m testbed-26M "${P[@]}" | json_field ppl)
"$EVAL" quantize -m testbed-26M "${Q[@]}" -o "$TMP/g.quant.safetensors" >"$TMP/out" 2>"$TMP/progress" || bad "quantize"
[[ $(grep -c "^gptq: layer [1-6]/6 quantized" "$TMP/progress") == 6 ]] && pass "progress once per layer" \
  || bad "progress: $(cat "$TMP/progress")"
grep -q "GPTQ W3g128" "$TMP/out" && pass "quantize reports the label" || bad "quantize output: $(cat "$TMP/out")"
ppl_in_range "GPTQ W3 artifact evaluates" "$("$EVAL" ppl -m testbed-26M --quantized "$TMP/g.quant.safetensors" "${P[@]}" | json_field ppl)" "$fp"

"$EVAL" quantize -m testbed-26M "${Q[@]}" --act-order -o "$TMP/ao.quant.safetensors" >/dev/null 2>&1 || bad "quantize --act-order"
python3 - "$TMP/ao.quant.safetensors" "$TMP/g.quant.safetensors" <<'PY' && pass "act-order stores one I32 permutation per linear" || bad "act-order perm tensors"
import json, struct, sys
def header(p):
    d = open(p, "rb").read()
    n = struct.unpack("<Q", d[:8])[0]
    return json.loads(d[8:8 + n])
ao, plain = header(sys.argv[1]), header(sys.argv[2])
perms = [k for k in ao if k.endswith(".perm")]
ok = len(perms) == 42 and all(ao[k]["dtype"] == "I32" for k in perms) and not any(k.endswith(".perm") for k in plain)
sys.exit(0 if ok else 1)
PY
ppl_in_range "act-order artifact evaluates" "$("$EVAL" ppl -m testbed-26M --quantized "$TMP/ao.quant.safetensors" "${P[@]}" | json_field ppl)" "$fp"

# A permutation with a repeated channel is refused, naming the file and the tensor.
python3 - "$TMP/ao.quant.safetensors" "$TMP/badperm.safetensors" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
begin = h["model.layers.2.mlp.down_proj.weight.perm"]["data_offsets"][0]
data[8 + n + begin + 4:8 + n + begin + 8] = data[8 + n + begin:8 + n + begin + 4]  # entry 1 = entry 0
open(sys.argv[2], "wb").write(data)
PY
expect_error "broken permutation" "badperm.safetensors: tensor model.layers.2.mlp.down_proj.weight.perm is not a permutation" -- \
  "$EVAL" ppl -m testbed-26M --quantized "$TMP/badperm.safetensors"

expect_error "calibration on a test set (by name)" "calibration data 'wikitext2' is an evaluation test set" -- \
  "$EVAL" quantize -m testbed-26M --quant gptq --wbits 3 --calib-data wikitext2 -o "$TMP/never.quant.safetensors"
expect_error "calibration on a test set (by file)" "is an evaluation test set (wiki.test.raw)" -- \
  "$EVAL" quantize -m testbed-26M --quant gptq --wbits 3 --calib-data "$(data_root)/datasets/wikitext-2-raw/wiki.test.raw" \
  -o "$TMP/never.quant.safetensors"
[[ ! -e "$TMP/never.quant.safetensors" ]] && pass "nothing written on refusal" || bad "refused run wrote a file"
finish
