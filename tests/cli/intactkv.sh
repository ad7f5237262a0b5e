#!/usr/bin/env bash
# IntactKV from the command line: pivot inspection finds <bos> on testbed-26M (channel 10) and no
# pivot on stories260K; the MSE sweep falls when the first pivot becomes intact; a built prefix
# file is used like any IntactKV and refused by another model.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }

"$EVAL" inspect -m testbed-26M --text datasets/wikitext-2-raw/wiki.test.raw --max-tokens 128 -o "$TMP/insp" --json >"$TMP/i.json"
python3 - "$TMP/i.json" <<'PY' && pass "testbed pivot: <s>, channel 10" || bad "testbed pivot: $(cat "$TMP/i.json")"
import json, sys
r = json.load(open(sys.argv[1]))
p = r["pivots"][0]
assert p["position"] == 0 and p["piece"] == "<s>" and p["channel"] == 10, p
assert p["peak"] > 300 and set([3, 4]) <= set(p["layers"]), p
assert len(r["pivots"]) <= 3, r["pivots"]
PY
for f in inspect.md peaks.png peaks.svg attention_mass.png attention_layer1.svg; do
  [[ -s "$TMP/insp/$f" ]] || bad "inspect output $f missing"
done
"$EVAL" inspect -m stories260K --text datasets/wikitext-2-raw/wiki.test.raw --max-tokens 128 -o "$TMP/insp2" >"$TMP/i2.md"
grep -q "no pivot tokens" "$TMP/i2.md" && pass "stories260K: no pivot, said so" || bad "stories260K pivots: $(grep -A3 'Pivot' "$TMP/i2.md")"

"$EVAL" mse-sweep -m testbed-26M --quant rtn --wbits 3 --prefix vicuna --max-size 3 --samples 2 --len 64 -o "$TMP/mse" --json >"$TMP/m.json"
python3 - "$TMP/m.json" <<'PY' && pass "MSE falls from size 0 to 1" || bad "MSE sweep: $(cat "$TMP/m.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["sizes"] == [0, 1, 2, 3]
assert r["mean_layer_mse"][1] < 0.9 * r["mean_layer_mse"][0], r["mean_layer_mse"]
assert r["last_layer_mse"][1] < r["last_layer_mse"][0]
PY
[[ -s "$TMP/mse/mse_sweep.png" && -s "$TMP/mse/mse_sweep.md" ]] || bad "mse-sweep outputs"

"$EVAL" intactkv build -m testbed-26M --prefix bos -o "$TMP/bos.ikv.safetensors" >/dev/null || bad "build"
a=$("$EVAL" ppl -m testbed-26M --quant rtn --wbits 3 --ctx 256 --windows 2 --intactkv bos --json | json_field ppl)
b=$("$EVAL" ppl -m testbed-26M --quant rtn --wbits 3 --ctx 256 --windows 2 --intactkv "$TMP/bos.ikv.safetensors" --json | json_field ppl)
[[ "$a" == "$b" ]] && pass "prefix file == built prefix" || bad "file $b vs built $a"
expect_error "prefix of another model" "not this model" -- "$EVAL" ppl -m llama2xs --intactkv "$TMP/bos.ikv.safetensors"
expect_error "bad prefix spec" "not one of bos" -- "$EVAL" intactkv build -m testbed-26M --prefix bogus -o "$TMP/x"
finish
