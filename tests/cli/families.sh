#!/usr/bin/env bash
# The later families through ikv-eval: a run over the four tiny checkpoints (LLaMA-3, Mistral,
# Qwen2, Qwen3) with RTN, QuaRot W4A4, KV4 and IntactKV_[P] in each family's chat format; ppl and
# tasks on a model without BOS; IntactKV_[B] on it refused before anything is written.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
cat >"$TMP/families.yaml" <<'YAML'
models:
  - {name: tiny-llama3, path: models/tiny-llama3}
  - {name: tiny-mistral, path: models/tiny-mistral}
  - {name: tiny-qwen2, path: models/tiny-qwen2}
  - {name: tiny-qwen3, path: models/tiny-qwen3}
quantizers: [fp, {method: rtn, wbits: 4, group: 32}, {method: quarot, wbits: 4, abits: 4, group: -1}]
kv_bits: [4]
intactkv: [none, system]
tasks:
  ppl: {datasets: [wikitext2], ctx: 64, windows: 1}
YAML
"$EVAL" run "$TMP/families.yaml" --out "$TMP/fam" --threads 2 >"$TMP/fam.md" 2>"$TMP/fam.log" || bad "run: $(tail -3 "$TMP/fam.log")"
grep -q "24 computed, 0 failed" "$TMP/fam.log" && pass "24 cells over four families" || bad "cells: $(tail -2 "$TMP/fam.log")"
for m in tiny-llama3 tiny-mistral tiny-qwen2 tiny-qwen3; do
  grep -q "| $m wikitext2" "$TMP/fam.md" || bad "no $m column"
done
grep -q "^| + IntactKV_\[P\] | [0-9]" "$TMP/fam.md" && pass "IntactKV_[P] rows" || bad "no IntactKV_[P] rows"

# A model without BOS: ppl scores every prediction of the window (63 of 64), tasks run.
out=$("$EVAL" ppl -m tiny-qwen3 -c 64 --windows 1 --json 2>"$TMP/err") || bad "ppl: $(cat "$TMP/err")"
[[ $(echo "$out" | json_field tokens_scored) == "63" ]] && pass "qwen3 ppl: 63 targets, no BOS" || bad "ppl: $out"
"$EVAL" tasks -m tiny-qwen3 --tasks arc_easy --limit 2 >"$TMP/tasks.out" 2>"$TMP/err" && pass "qwen3 tasks" ||
  bad "tasks: $(cat "$TMP/err")"

sed 's/intactkv: \[none, system\]/intactkv: [bos]/' "$TMP/families.yaml" >"$TMP/bos.yaml"
expect_error "IntactKV_[B] without BOS" "tiny-qwen2: IntactKV bos: this model has no <bos> token" -- \
  "$EVAL" run "$TMP/bos.yaml" --out "$TMP/bos"
[[ ! -e "$TMP/bos" ]] && pass "nothing written" || bad "wrote $TMP/bos"
expect_error "ppl --intactkv bos without BOS" "has no <bos> token" -- \
  "$EVAL" ppl -m tiny-qwen3 -c 64 --windows 1 --quant rtn --wbits 4 --group 32 --intactkv bos
finish
