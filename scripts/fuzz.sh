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
build fuzz_tokenizer "$ROOT/src/model/tokenizer.cc" -lsentencepiece

# Seeds: a valid two-tensor safetensors file, a valid tiny llama2.c checkpoint, the repo's configs
# that stand alone (no `extends`) plus an alias bomb, shard indexes, and real tokenizer models.
rm -rf "$OUT/seed_cfg" "$OUT/seed_idx" "$OUT/seed_tok"
mkdir -p "$OUT/seed_st" "$OUT/seed_l2c" "$OUT/seed_cfg" "$OUT/seed_idx" "$OUT/seed_tok"
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
PY
# target:seeds:max_len. fuzz_tokenizer's coverage stops at our wrapper (libsentencepiece and
# libprotobuf are not instrumented), so its inputs (up to the 500 KB LLaMA-2 model) are not kept.
rm -rf "$OUT/corpus_fuzz_tokenizer"
for t in fuzz_safetensors_header:seed_st:4096 fuzz_llama2c_reader:seed_l2c:4096 fuzz_config:seed_cfg:4096 \
  fuzz_shard_index:seed_idx:8192 fuzz_tokenizer:seed_tok:524288; do
  IFS=: read -r target seeds max_len <<<"$t"
  mkdir -p "$OUT/corpus_$target"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s" >&2
  "$OUT/$target" -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$OUT/$target-" "$OUT/corpus_$target" "$OUT/$seeds" 2>"$OUT/$target.log" \
    || { tail -30 "$OUT/$target.log" >&2; exit 1; }
  grep -E "^Done|#[0-9]+.*DONE" "$OUT/$target.log" | tail -1 >&2 || true
done
