#!/usr/bin/env bash
# Quantized models from the command line: saved packed weights reproduce the in-process numbers,
# and bad settings or corrupt artifacts are one-line errors with exit code 2.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
Q=(--quant rtn --wbits 3 --group 4)

"$EVAL" quantize -m stories260K "${Q[@]}" -o "$TMP/s.quant.safetensors" >/dev/null || bad "quantize"
a=$("$EVAL" ppl -m stories260K "${Q[@]}" --ctx 128 --windows 3 --json)
b=$("$EVAL" ppl -m stories260K --quantized "$TMP/s.quant.safetensors" --ctx 128 --windows 3 --json)
[[ $(echo "$a" | json_field ppl) == $(echo "$b" | json_field ppl) ]] && pass "saved weights give the same PPL" || bad "saved != in-process"
[[ $(echo "$a" | python3 -c "import json,sys; q=json.load(sys.stdin)['quant']; print(q['method'], q['wbits'], q['group'])") == "rtn 3 4" ]] \
  && pass "--json carries the quant settings" || bad "--json quant settings"
[[ $(echo "$b" | python3 -c "import json,sys; q=json.load(sys.stdin)['quant']; print(q['method'], q['wbits'], q['group'])") == "rtn 3 4" ]] \
  && pass "--quantized reports the artifact's settings" || bad "--quantized quant settings: $b"
fp=$("$EVAL" ppl -m stories260K --ctx 128 --windows 3 --json | json_field ppl)
python3 -c "import sys; sys.exit(0 if float('$(echo "$a" | json_field ppl)') > float('$fp') else 1)" \
  && pass "W3 PPL above FP" || bad "W3 PPL not above FP"

# --dtype bf16 on packed weights: bf16 inputs, exact codes; close to the fp32 run but not equal.
c=$("$EVAL" ppl -m stories260K --quantized "$TMP/s.quant.safetensors" --dtype bf16 --ctx 128 --windows 3 --json)
python3 - "$(echo "$a" | json_field ppl)" "$(echo "$c" | json_field ppl)" "$(echo "$c" | json_field dtype)" <<'PY' \
  && pass "bf16 compute on packed weights: PPL within 1% of fp32, not identical" || bad "bf16 packed PPL: $c"
import sys
fp32, bf16, dtype = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
sys.exit(0 if dtype == "bf16" and bf16 != fp32 and abs(bf16 / fp32 - 1) < 0.01 else 1)
PY
# --dtype q8: packed linears take int8-block inputs; likewise close to fp32 but not equal.
d=$("$EVAL" ppl -m stories260K --quantized "$TMP/s.quant.safetensors" --dtype q8 --ctx 128 --windows 3 --json)
python3 - "$(echo "$a" | json_field ppl)" "$(echo "$d" | json_field ppl)" "$(echo "$d" | json_field dtype)" <<'PY' \
  && pass "q8 inputs to packed weights: PPL within 1% of fp32, not identical" || bad "q8 packed PPL: $d"
import sys
fp32, q8, dtype = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
sys.exit(0 if dtype == "q8" and q8 != fp32 and abs(q8 / fp32 - 1) < 0.01 else 1)
PY

expect_error "bits out of range" "wbits: must be between 2 and 8, got 9" -- "$EVAL" ppl -m stories260K --quant rtn --wbits 9
expect_error "group not dividing" "down_proj.weight: group size 64 does not divide" -- \
  "$EVAL" ppl -m stories260K --quant rtn --wbits 4 --group 64
expect_error "kv bits" "kv-bits: must be between 2 and 8, or 16, got 1" -- "$EVAL" ppl -m stories260K --kv-bits 1
expect_error "unknown method" "'gptx' is not supported" -- "$EVAL" ppl -m stories260K --quant gptx

# Corrupt artifacts: truncated, applied to another model, a scale overwritten with NaN.
head -c 20000 "$TMP/s.quant.safetensors" >"$TMP/trunc.safetensors"
expect_error "truncated artifact" "trunc.safetensors: " -- "$EVAL" ppl -m stories260K --quantized "$TMP/trunc.safetensors"
expect_error "artifact of another model" "quantized from another model" -- \
  "$EVAL" ppl -m llama2xs --quantized "$TMP/s.quant.safetensors"
python3 - "$TMP/s.quant.safetensors" "$TMP/nan.safetensors" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
begin = h["model.layers.0.self_attn.q_proj.weight.scales"]["data_offsets"][0]
data[8 + n + begin:8 + n + begin + 2] = struct.pack("<H", 0x7e00)  # fp16 NaN
open(sys.argv[2], "wb").write(data)
PY
expect_error "NaN scale" "invalid scale" -- "$EVAL" ppl -m stories260K --quantized "$TMP/nan.safetensors"
finish
