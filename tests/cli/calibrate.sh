#!/usr/bin/env bash
# ikv-calibrate end to end on a tiny budget: JSON per epoch and a final object, a calibrated file
# that ikv-eval uses like any IntactKV, and one-line errors (exit 2, nothing written) on bad input.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
CAL="$BUILD/ikv-calibrate"
ARGS=(-m testbed-26M --quant rtn --wbits 3 --group 128 --prefix bos --heldout 2
      --max-len 160 --min-loss-tokens 20 --epochs 2 --grad-accum 2 --threads 1)
"$CAL" "${ARGS[@]}" --data sharegpt --samples 4 --lr 1e-3 -o "$TMP/c.ikv.safetensors" --json >"$TMP/c.jsonl" 2>"$TMP/c.err" || { cat "$TMP/c.err"; bad "calibrate"; }
python3 - "$TMP/c.jsonl" <<'PY' && pass "JSON lines: epochs and final held-out MSE" || bad "JSON: $(cat "$TMP/c.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
final = rows[-1]
assert final["heldout_mse_before"] > 0 and final["heldout_mse_after"] > 0, final
assert len(rows) >= 3, rows  # two epochs + the final object
PY
[[ -s "$TMP/c.loss.png" && -s "$TMP/c.loss.svg" ]] && pass "loss-curve plot" || bad "no loss plot"
"$EVAL" ppl -m testbed-26M --quant rtn --wbits 3 --ctx 128 --windows 2 --intactkv "$TMP/c.ikv.safetensors" --json >/dev/null \
  && pass "ikv-eval uses the calibrated prefix" || bad "ikv-eval with calibrated prefix"
expect_error "zero samples" "samples" -- "$CAL" "${ARGS[@]}" --data sharegpt --samples 0 -o "$TMP/bad.ikv.safetensors"
expect_error "negative lr" "lr" -- "$CAL" "${ARGS[@]}" --data sharegpt --samples 4 --lr -1 -o "$TMP/bad.ikv.safetensors"
expect_error "missing data" "nope.json" -- "$CAL" "${ARGS[@]}" --data "$TMP/nope.json" --samples 4 -o "$TMP/bad.ikv.safetensors"
ls "$TMP"/bad* >/dev/null 2>&1 && bad "bad input wrote files" || pass "nothing written on bad input"
finish
