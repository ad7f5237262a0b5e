#!/usr/bin/env bash
# ikv-eval ppl / generate from the command line: JSON output and one-line errors with exit code 2.
source "$(dirname "$0")/common.bash"
ROOT=$(data_root)
[[ -z "$ROOT" ]] && { echo "SKIP: no ikv-data"; exit 0; }

out=$("$EVAL" ppl -m stories260K --ctx 128 --windows 3 --json --threads 2)
for key in ppl tokens_scored windows seconds tokens_per_second; do
  echo "$out" | json_field "$key" >/dev/null || bad "ppl --json lacks $key"
done
[[ $(echo "$out" | json_field tokens_scored) == 378 ]] && pass "3 windows of 128 score 3*126 tokens" || bad "tokens_scored"
[[ $(echo "$out" | json_field windows) == 3 ]] || bad "windows"

# The same model from its llama2.c .bin gives the same perplexity.
out_bin=$("$EVAL" ppl -m "$ROOT/models/stories260K/original/stories260K.bin" --ctx 128 --windows 3 --json)
[[ $(echo "$out" | json_field ppl) == $(echo "$out_bin" | json_field ppl) ]] && pass "bin == HF folder" || bad "bin != HF"

gen=$("$EVAL" generate -m stories260K -p "Once upon a time" -n 20)
[[ "$gen" == "Once upon a time, there was a little girl named Lily."* ]] && pass "generate" || bad "generate: $gen"
# The completion continues the prompt's text: a word after the prompt keeps its leading space.
gen=$("$EVAL" generate -m stories260K -p "Once upon a time there" -n 2 --json)
python3 -c 'import json,sys; c=json.loads(sys.argv[1])["completion"]; sys.exit(0 if c.startswith(" ") else 1)' "$gen" \
  && pass "generate: completion keeps its leading space" || bad "generate completion: $gen"

expect_error "missing model" "nope: missing" -- "$EVAL" ppl -m nope
expect_error "missing dataset" "no-such.txt: missing" -- "$EVAL" ppl -m stories260K -d no-such.txt
expect_error "ctx too small" "ctx: must be at least 3, got 2" -- "$EVAL" ppl -m stories260K --ctx 2
expect_error "ctx too large" "exceeds the model's max_position_embeddings" -- "$EVAL" ppl -m stories260K --ctx 4096
expect_error "c4 absent" "c4: no copy of C4" -- "$EVAL" ppl -m stories260K -d c4
expect_error "unknown option" "--bogus" -- "$EVAL" ppl -m stories260K --bogus
expect_error "bad dtype" "dtype 'fp8'" -- "$EVAL" ppl -m stories260K --dtype fp8

# A corrupted checkpoint: truncated safetensors in a copy of the folder.
mkdir -p "$TMP/m"
cp "$ROOT"/models/stories260K/{config.json,tokenizer.model} "$TMP/m/"
head -c 500000 "$ROOT/models/stories260K/model.safetensors" >"$TMP/m/model.safetensors"
expect_error "truncated checkpoint" "model.safetensors: tensor .* leave the data buffer" -- "$EVAL" ppl -m "$TMP/m"
echo '{"hidden_size": 64' >"$TMP/m/config.json"
expect_error "bad config.json" "config.json: bad JSON" -- "$EVAL" ppl -m "$TMP/m"
finish
