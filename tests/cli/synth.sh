#!/usr/bin/env bash
# ikv-eval synth: a tiny synthetic checkpoint of each family loads and runs through ppl (its
# tokenizer linked from the data root, fp32 and bf16 compute), --json, and one-line errors.
source "$(dirname "$0")/common.bash"
ROOT=$(data_root)
[[ -z "$ROOT" ]] && { echo "SKIP: no ikv-data"; exit 0; }

out=$("$EVAL" synth --shape llama2-7b --tiny --layers 1 --seed 3 -o "$TMP/l2" --json)
[[ $(echo "$out" | json_field layers) == 1 ]] && pass "synth --json" || bad "synth --json: $out"
[[ -L "$TMP/l2/tokenizer.model" ]] && pass "tokenizer linked, not copied" || bad "no tokenizer link in $TMP/l2"
for shape in llama2-7b llama3-8b qwen3-8b mistral-7b; do
  dir="$TMP/$shape"
  "$EVAL" synth --shape "$shape" --tiny --dtype fp16 -o "$dir" >/dev/null
  for dtype in fp32 bf16; do
    ppl=$("$EVAL" ppl -m "$dir" -c 64 --windows 1 --dtype "$dtype" --json | json_field ppl)
    python3 -c "import math,sys; v=float(sys.argv[1]); sys.exit(0 if math.isfinite(v) and v > 1 else 1)" "$ppl" \
      && pass "$shape tiny, --dtype $dtype: PPL $ppl" || bad "$shape $dtype: PPL '$ppl'"
  done
done
# A random model predicts about uniformly: PPL near the vocabulary size.
ppl=$("$EVAL" ppl -m "$TMP/l2" -c 64 --windows 1 --json | json_field ppl)
python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if 8000 < v < 128000 else 1)" "$ppl" \
  && pass "random llama2 PPL $ppl near its vocabulary (32000)" || bad "random llama2 PPL $ppl"

expect_error "unknown shape" "shape 'gpt2' is not known" -- "$EVAL" synth --shape gpt2 -o "$TMP/x"
expect_error "folder not empty" "l2: exists and is not an empty folder" -- "$EVAL" synth --shape llama2-7b --tiny -o "$TMP/l2"
expect_error "dtype" "--dtype: fp32 not in {bf16,fp16}" -- "$EVAL" synth --shape llama2-7b --dtype fp32 -o "$TMP/y"
expect_error "layers" "--layers: Value 0 not in range" -- "$EVAL" synth --shape llama2-7b --layers 0 -o "$TMP/y"
[[ ! -e "$TMP/x" && ! -e "$TMP/y" ]] && pass "nothing written on errors" || bad "a refused synth wrote files"
finish
