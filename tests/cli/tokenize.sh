#!/usr/bin/env bash
# ikv-eval tokenize: the tokenizer each model folder gets (tokenizer.json first, else
# tokenizer.model), its ids and pieces, JSON output, and one-line errors with exit code 2.
source "$(dirname "$0")/common.bash"
ROOT=$(data_root)
[[ -z "$ROOT" ]] && { echo "SKIP: no ikv-data"; exit 0; }

check() {  # name expected command...
  local name=$1 want=$2; shift 2
  local got
  got=$("$@" 2>"$TMP/err") || { bad "$name: exit $? ($(cat "$TMP/err"))"; return; }
  [[ "$got" == "$want" ]] && pass "$name" || bad "$name: got '$got', want '$want'"
}
check "llama3 ids" "9906 1917" "$EVAL" tokenize -m tiny-llama3 -p "Hello world" --ids
check "qwen3 ids (added tokens matched)" "151644 872 198 13048 151645" "$EVAL" tokenize -m tiny-qwen3 -p $'<|im_start|>user\nHi<|im_end|>' --ids
# tiny-mistral has both files: tokenizer.json wins, and it adds no second ▁ before a leading space.
check "mistral ids from tokenizer.json" "23325" "$EVAL" tokenize -m tiny-mistral -p " Hello" --ids
check "llama2.c tok512 pieces" $'▁Once\n▁upon' "$EVAL" tokenize -m stories260K -p "Once upon" --pieces
check "default: id and piece" $'9906\tHello\n1917\tĠworld' "$EVAL" tokenize -m tiny-llama3 -p "Hello world"
grep -q "^2 tokens (tokenizer.json: .*models/tiny-llama3/tokenizer.json)$" "$TMP/err" && pass "summary on stderr" \
  || bad "summary: $(cat "$TMP/err")"

printf 'Hello world\n' >"$TMP/text.txt"
out=$("$EVAL" tokenize -m tiny-qwen2 -f "$TMP/text.txt" --json)
[[ $(echo "$out" | json_field ids) == "[9707, 1879, 198]" ]] && pass "--json ids" || bad "--json: $out"
[[ $(echo "$out" | json_field bos_id) == "-1" ]] && pass "qwen: no bos" || bad "qwen bos: $out"
[[ $(echo "$out" | json_field kind) == "tokenizer.json" ]] || bad "kind: $out"

expect_error "no text" "give exactly one of -f FILE or -p TEXT" -- "$EVAL" tokenize -m tiny-llama3
expect_error "both texts" "give exactly one of -f FILE or -p TEXT" -- "$EVAL" tokenize -m tiny-llama3 -p a -f "$TMP/text.txt"
expect_error "ids and pieces" "excludes" -- "$EVAL" tokenize -m tiny-llama3 -p a --ids --pieces
expect_error "missing model" "nope: missing" -- "$EVAL" tokenize -m nope -p a
mkdir -p "$TMP/m"
echo '{"model": {"type": "WordPiece", "vocab": {}}}' >"$TMP/m/tokenizer.json"
expect_error "unsupported tokenizer.json" "m/tokenizer.json: model type \"WordPiece\" is not supported" -- \
  "$EVAL" tokenize -m "$TMP/m" -p a
echo '{"model": {"vocab": {"a": 0}, "merges": ["a b"]' >"$TMP/m/tokenizer.json"
expect_error "truncated tokenizer.json" "m/tokenizer.json: bad JSON" -- "$EVAL" tokenize -m "$TMP/m" -p a
rm "$TMP/m/tokenizer.json"
expect_error "no tokenizer" "no tokenizer.json or tokenizer.model next to the model" -- "$EVAL" tokenize -m "$TMP/m" -p a
finish
