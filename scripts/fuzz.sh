#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS seconds from a small
# seed corpus. Usage: scripts/fuzz.sh [SECONDS] [OUT_DIR]. Exit code non-zero on any crash.
set -euo pipefail
SECONDS_PER_TARGET=${1:-30}
OUT=${2:-build/fuzz}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${IKV_DATA:-$ROOT/../shared/ikv-data}  # read-only; seeds are copied out of it, never into the repo
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 3; }
mkdir -p "$OUT"
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -mf16c)
# Rebuilt when older than its .cc or any source listed.
build() {  # target sources-and-libs...
  local target=$1 f fresh=1; shift
  for f in "$ROOT/fuzz/$target.cc" "$@"; do
    if [[ -f $f && ! "$OUT/$target" -nt $f ]]; then fresh=0; fi
  done
  ((fresh)) && return 0
  echo "fuzz: building $target" >&2
  "$CXX" "${FLAGS[@]}" -I "$ROOT/src" -o "$OUT/$target" "$ROOT/fuzz/$target.cc" "$@"
}

build fuzz_safetensors_header "$ROOT/src/io/safetensors.cc" "$ROOT/src/io/mapped_file.cc" "$ROOT/src/io/text.cc"
build fuzz_llama2c_reader "$ROOT/src/model/llama2c.cc" "$ROOT/src/model/config.cc" "$ROOT/src/io/mapped_file.cc" "$ROOT/src/io/text.cc"
build fuzz_config "$ROOT/src/exp/config.cc" "$ROOT/src/exp/yaml_tree.cc" \
  "$ROOT/src/exp/schema_check.cc" "$ROOT/src/exp/config_emit.cc" "$ROOT/src/io/sha256.cc" \
  "$ROOT/src/io/mapped_file.cc" "$ROOT/src/io/text.cc" -lyaml-cpp -lcrypto
build fuzz_shard_index "$ROOT/src/model/shard_index.cc"
TOKENIZER=("$ROOT"/src/model/{tokenizer,tokenizer_spm,tokenizer_hf,tokenizer_tiktoken,bpe,added_tokens,unicode_text}.cc
  "$ROOT/src/io/mapped_file.cc" "$ROOT/src/io/text.cc" -lsentencepiece -lpcre2-8 -licuuc)
build fuzz_tokenizer "${TOKENIZER[@]}"
build fuzz_tokenizer_json "${TOKENIZER[@]}"

# Seeds: a valid two-tensor safetensors file, a valid tiny llama2.c checkpoint, the repo's configs
# that stand alone (no `extends`) plus an alias bomb, shard indexes, and real tokenizer models.
rm -rf "$OUT/seed_cfg" "$OUT/seed_idx" "$OUT/seed_tok" "$OUT/seed_json"
mkdir -p "$OUT/seed_st" "$OUT/seed_l2c" "$OUT/seed_cfg" "$OUT/seed_idx" "$OUT/seed_tok" "$OUT/seed_json"
for f in "$ROOT"/configs/*.yaml "$ROOT"/configs/common/*.yaml; do
  grep -q '^extends:' "$f" || cp "$f" "$OUT/seed_cfg/"
done
if [[ -f "$DATA/models/testbed-26M/model.safetensors.index.json" ]]; then
  cp "$DATA/models/testbed-26M/model.safetensors.index.json" "$OUT/seed_idx/testbed-26M.json"
fi
for m in llama2-tokenizer stories260K; do
  if [[ -f "$DATA/models/$m/tokenizer.model" ]]; then
    cp "$DATA/models/$m/tokenizer.model" "$OUT/seed_tok/$m.model"
  else
    echo "fuzz: no $DATA/models/$m/tokenizer.model; fuzz_tokenizer starts without it" >&2
  fi
done
# The head of Meta's tiktoken file (the parser runs; the loader then wants all 128000 lines).
if [[ -f "$DATA/tokenizers/llama3/tokenizer.model" ]]; then
  head -n 300 "$DATA/tokenizers/llama3/tokenizer.model" >"$OUT/seed_tok/tiktoken-head.model"
fi
chmod -R u+w "$OUT"/seed_*
python3 - "$OUT" <<'PY'
import json, struct, sys
out = sys.argv[1]
hdr = json.dumps({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                  "b": {"dtype": "F16", "shape": [3], "data_offsets": [16, 22]},
                  "__metadata__": {"format": "pt"}}).encode()
open(f"{out}/seed_st/valid", "wb").write(struct.pack("<Q", len(hdr)) + hdr + bytes(22))
dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 1, 2, 1, 4, 4
hd, kvd = dim // heads, kv * dim // heads
n = vocab*dim + layers*(dim + dim*dim + 2*kvd*dim + dim*dim + dim + 3*hidden*dim) + dim + seq*hd
open(f"{out}/seed_l2c/valid", "wb").write(struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq) + struct.pack(f"<{n}f", *([0.5]*n)))
# "Billion laughs": 9 levels of 9 aliases expand to 9^9 scalars unless yaml_tree bounds expansion.
bomb = ["x-a: &a [x, x, x, x, x, x, x, x, x]"]
for prev, cur in zip("abcdefgh", "bcdefghi"):
    bomb.append(f"x-{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
open(f"{out}/seed_cfg/alias_bomb.yaml", "w").write("\n".join(bomb + ["models: [m]", "tasks: {ppl: {}}"]) + "\n")
wm = {f"model.layers.{l}.{p}.weight": f"model-0000{1 + l}-of-00002.safetensors"
      for l in range(2) for p in ("self_attn.q_proj", "mlp.up_proj", "input_layernorm")}
wm["model.embed_tokens.weight"] = "model-00001-of-00002.safetensors"
open(f"{out}/seed_idx/two_shards.json", "w").write(json.dumps({"metadata": {"total_size": 1024}, "weight_map": wm}, indent=2))
# Small tokenizer.json files shaped like the real ones (those are 2-11 MB): byte-level BPE with a
# Split regex, NFC and a BOS template (LLaMA-3 / Qwen), and Metaspace + byte fallback (Mistral).
def byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
bc = byte_chars()
vocab = {bc[b]: b for b in range(256)}
merges = []
for word in ["Ġt", "he", "Ġthe", "in", "Ġa", "ll", "Ġw", "or", "ld", "Ġwor", "Ġworld", "12", "Ġ" + bc[0xC3] + bc[0xA9]]:
    if word not in vocab:
        for i in range(1, len(word)):
            if word[:i] in vocab and word[i:] in vocab:
                merges.append([word[:i], word[i:]]); vocab[word] = len(vocab); break
regex = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
bytelevel = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": len(vocab), "content": "<|x|>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True},
                     {"id": len(vocab) + 1, "content": "<think>", "single_word": True, "lstrip": True, "rstrip": True,
                      "normalized": True, "special": False}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "post_processor": {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|x|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"<|x|>": {"id": "<|x|>", "ids": [len(vocab)], "tokens": ["<|x|>"]}}}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
              "fuse_unk": False, "byte_fallback": False, "ignore_merges": True, "vocab": vocab, "merges": merges}}
open(f"{out}/seed_json/bytelevel.json", "w").write(json.dumps(bytelevel, ensure_ascii=False))
sp = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    sp[f"<0x{b:02X}>"] = len(sp)
sp_merges = []
for word in ["▁t", "he", "▁the", "▁w", "or", "ld", "▁wor", "▁world", "▁▁"]:
    for ch in word:
        sp.setdefault(ch, len(sp))
    for i in range(1, len(word)):
        if word[:i] in sp and word[i:] in sp and word not in sp:
            sp_merges.append(word[:i] + " " + word[i:]); sp[word] = len(sp); break
metaspace = {
    "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                      "special": True} for t, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
    "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                 {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
              "ignore_merges": False, "vocab": sp, "merges": sp_merges}}
open(f"{out}/seed_json/metaspace.json", "w").write(json.dumps(metaspace, ensure_ascii=False))
PY
# target:seeds:max_len. fuzz_tokenizer's coverage stops at our wrapper for SentencePiece inputs
# (libsentencepiece and libprotobuf are not instrumented), so its inputs (up to the 500 KB LLaMA-2
# model) are not kept.
rm -rf "$OUT/corpus_fuzz_tokenizer"
for t in fuzz_safetensors_header:seed_st:4096 fuzz_llama2c_reader:seed_l2c:4096 fuzz_config:seed_cfg:4096 \
  fuzz_shard_index:seed_idx:8192 fuzz_tokenizer:seed_tok:524288 fuzz_tokenizer_json:seed_json:16384; do
  IFS=: read -r target seeds max_len <<<"$t"
  mkdir -p "$OUT/corpus_$target"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s" >&2
  "$OUT/$target" -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$OUT/$target-" "$OUT/corpus_$target" "$OUT/$seeds" 2>"$OUT/$target.log" \
    || { tail -30 "$OUT/$target.log" >&2; exit 1; }
  grep -E "^Done|#[0-9]+.*DONE" "$OUT/$target.log" | tail -1 >&2 || true
done
