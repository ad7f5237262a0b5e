#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS seconds from a small
# seed corpus. Usage: scripts/fuzz.sh [SECONDS] [OUT_DIR]. Exit code non-zero on any crash.
set -euo pipefail
SECONDS_PER_TARGET=${1:-30}
OUT=${2:-build/fuzz}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 3; }
mkdir -p "$OUT"
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -mf16c -I "$ROOT/src")
build() {  # target sources...
  local target=$1; shift
  [[ "$OUT/$target" -nt "$ROOT/fuzz/$target.cc" ]] && return 0
  "$CXX" "${FLAGS[@]}" -o "$OUT/$target" "$ROOT/fuzz/$target.cc" "$@"
}
build fuzz_safetensors_header "$ROOT/src/io/safetensors.cc" "$ROOT/src/io/mapped_file.cc"
build fuzz_llama2c_reader "$ROOT/src/model/llama2c.cc" "$ROOT/src/model/config.cc" "$ROOT/src/io/mapped_file.cc"

# Seeds: a valid two-tensor safetensors file and a valid tiny llama2.c checkpoint.
mkdir -p "$OUT/seed_st" "$OUT/seed_l2c"
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
PY
for t in fuzz_safetensors_header:seed_st fuzz_llama2c_reader:seed_l2c; do
  target=${t%%:*}; seeds=${t##*:}
  mkdir -p "$OUT/corpus_$target"
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s" >&2
  "$OUT/$target" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -rss_limit_mb=2048 \
    -artifact_prefix="$OUT/$target-" "$OUT/corpus_$target" "$OUT/$seeds" 2>"$OUT/$target.log" \
    || { tail -30 "$OUT/$target.log" >&2; exit 1; }
  grep -E "^Done|#[0-9]+.*DONE" "$OUT/$target.log" | tail -1 >&2 || true
done
