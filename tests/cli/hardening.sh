#!/usr/bin/env bash
# Hostile input, each case from a probe of ~200 bad inputs: exit code 2, one line on stderr that
# names the file or option, nothing on stdout, and no new files (the command runs in an empty
# folder and writes results there).
source "$(dirname "$0")/common.bash"
ROOT=$(data_root)
[[ -z "$ROOT" ]] && { echo "SKIP: no ikv-data"; exit 0; }
ROOT=$(realpath "$ROOT")
EVAL=$(realpath "$EVAL")
CAL=$(realpath "$BUILD/ikv-calibrate")
export IKV_DATA=$ROOT
TB=models/testbed-26M
IN="$TMP/in"  # inputs live here, outside the folder the command runs in
mkdir -p "$IN"

# bad NAME PATTERN -- command...: expect_error, run in a fresh empty folder that must stay empty.
n=0
refused() {
  local name=$1 pattern=$2; shift 3
  n=$((n + 1))
  local work="$TMP/work$n"
  mkdir -p "$work"
  pushd "$work" >/dev/null
  expect_error "$name" "$pattern" -- "$@"
  popd >/dev/null
  local left
  left=$(cd "$work" && find . -mindepth 1 | head -5 | tr '\n' ' ')
  [[ -z "$left" ]] || bad "$name: left files behind: $left"
}
# A config in $IN whose body follows the model line.
config() {  # NAME MODEL_LINE BODY
  printf 'models: [%s]\n%s\n' "$2" "$3" >"$IN/$1.yaml"
  echo "$IN/$1.yaml"
}
PPL_TASK='tasks: {ppl: {datasets: [wikitext2], ctx: 64, windows: 2}}'

# 1. YAML alias bomb (9 levels of 9 aliases): bounded, named by file and line. The memory limit
# keeps a regression from taking the machine down with it.
python3 - "$IN/bomb.yaml" <<'PY'
import sys
lines = ['x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
for i in range(1, 10):
    lines.append(f'x-a{i}: &a{i} [' + ','.join([f'*a{i-1}'] * 9) + ']')
lines += ['models: [{path: models/testbed-26M}]', 'tasks: {ppl: {}}']
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')
PY
refused "alias bomb" "bomb.yaml:[0-9]*:[0-9]*: config expands to more than" -- \
  bash -c 'ulimit -v 4000000; exec "$@"' _ "$EVAL" run "$IN/bomb.yaml" --out .

# 2. Thread counts beyond reason: CLI (ikv-eval, ikv-calibrate) and YAML.
refused "ppl --threads 100000" "threads: must be between 0 and" -- "$EVAL" ppl -m $TB --threads 100000
refused "calibrate --threads 100000" "threads: must be between 0 and" -- \
  "$CAL" -m $TB --quant rtn --wbits 3 -o x.ikv.safetensors --threads 100000
refused "yaml threads: 100000" "threads.yaml:2:.*threads must be between 0 and" -- \
  "$EVAL" run "$(config threads "{path: $TB}" "threads: 100000
$PPL_TASK")" --out .

# 4. CLI options pass the YAML schema's rules.
refused "--windows -5" "windows: must be at least 0, got -5" -- "$EVAL" ppl -m $TB --windows -5
refused "--ctx 2" "ctx: must be at least 3, got 2" -- "$EVAL" ppl -m $TB -c 2
refused "--kv-bits 9" "kv-bits: must be between 2 and 8, or 16" -- "$EVAL" ppl -m $TB --kv-bits 9
refused "--wbits 1" "wbits: must be between 2 and 8" -- "$EVAL" ppl -m $TB --quant rtn --wbits 1
refused "tasks --limit -1" "limit: must be at least 0" -- "$EVAL" tasks -m $TB --tasks piqa --limit -1

# 5. NaN weights: an error naming the model, never "PPL nan".
cp -r "$ROOT/$TB" "$IN/nan-model" && chmod -R u+w "$IN/nan-model"
python3 - "$IN/nan-model" <<'PY'
import json, struct, sys, os
d = sys.argv[1]
index = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
name = "model.layers.1.mlp.down_proj.weight"
path = os.path.join(d, index[name])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    b, e = h[name]["data_offsets"]
    assert h[name]["dtype"] == "F16"
    f.seek(8 + n + b)
    f.write(b"\x00\x7e" * ((e - b) // 2))
PY
refused "NaN weights (ppl)" "nan-model: perplexity window 0 has a non-finite NLL" -- \
  "$EVAL" ppl -m "$IN/nan-model" -c 64 --windows 1
nan_cfg=$(config nan "{path: $IN/nan-model, name: nanny}" "$PPL_TASK")
rc=0; (cd "$TMP" && "$EVAL" run "$nan_cfg" --out "$TMP/nan-out" >/dev/null 2>"$TMP/nan.err") || rc=$?
if [[ $rc -eq 2 ]] && grep -q "nanny.*non-finite" "$TMP/nan.err"; then pass "NaN weights (run): exit 2 naming the cell"
else bad "NaN weights (run): exit $rc: $(cat "$TMP/nan.err")"; fi
"$EVAL" report --out "$TMP/nan-out" --format json >"$TMP/nan.json" 2>/dev/null || true
if grep -qi "nan" <(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'])" "$TMP/nan.json" 2>/dev/null); then
  bad "NaN weights (run): a NaN cell was stored"
else pass "NaN weights (run): nothing stored"; fi

# 6. Bad inputs found before ikv.sqlite or a report is written; a dry run writes nothing.
refused "ctx beyond max positions" "beyond.yaml:1:.*ppl ctx 4096 exceeds the model's max_position_embeddings 1024" -- \
  "$EVAL" run "$(config beyond "{path: $TB}" 'tasks: {ppl: {ctx: 4096}}')" --out .
cp -r "$ROOT/$TB" "$IN/truncated" && chmod -R u+w "$IN/truncated"
truncate -s 1000000 "$IN/truncated/model-00002-of-00004.safetensors"
refused "truncated shard" "model-00002-of-00004.safetensors: tensor .* leave the data buffer" -- \
  "$EVAL" run "$(config trunc "{path: $IN/truncated}" "$PPL_TASK")" --out .
: >"$IN/empty.txt"
refused "empty dataset" "empty.txt: dataset is empty" -- \
  "$EVAL" run "$(config emptyds "{path: $TB}" "tasks: {ppl: {datasets: [$IN/empty.txt], ctx: 64}}")" --out .
refused "missing dataset" "nowhere.txt: missing" -- \
  "$EVAL" run "$(config missingds "{path: $TB}" "tasks: {ppl: {datasets: [$IN/nowhere.txt], ctx: 64}}")" --out .
(cd "$IN" && "$EVAL" intactkv build -m models/stories260K --prefix bos -o "$IN/foreign.ikv.safetensors" >/dev/null 2>&1) ||
  bad "building a stories260K prefix"
refused "foreign IntactKV file" "foreign.ikv.safetensors: IntactKV was built for model" -- \
  "$EVAL" run "$(config foreign "{path: $TB}" "quantizers: [{method: rtn, wbits: 4}]
intactkv: [{file: $IN/foreign.ikv.safetensors}]
$PPL_TASK")" --out .
refused "a config with no cells" "nocells.yaml: nothing to run" -- \
  "$EVAL" run "$(config nocells "{path: $TB}" "intactkv: [bos]
$PPL_TASK")" --out .
good_cfg=$(config good "{path: $TB}" "$PPL_TASK")
mkdir -p "$TMP/dry" && (cd "$TMP/dry" && "$EVAL" run "$good_cfg" --out . --dry-run >/dev/null 2>&1) || bad "dry run failed"
[[ -z "$(ls -A "$TMP/dry")" ]] && pass "dry run writes nothing" || bad "dry run wrote: $(ls -A "$TMP/dry")"

# 7. Store integrity: an empty file, a foreign SQLite database and a corrupt store are refused
# and left exactly as they were.
store_refused() {  # NAME PATTERN: $TMP/store-NAME/ikv.sqlite prepared by the caller
  local dir="$TMP/store-$1" before after
  before=$(sha256sum "$dir/ikv.sqlite")
  expect_error "store: $1" "$2" -- "$EVAL" run "$good_cfg" --out "$dir"
  after=$(sha256sum "$dir/ikv.sqlite")
  [[ "$before" == "$after" ]] || bad "store: $1: the file was modified"
  [[ $(ls "$dir") == "ikv.sqlite" ]] || bad "store: $1: left $(ls "$dir" | tr '\n' ' ')"
}
mkdir -p "$TMP/store-empty" && : >"$TMP/store-empty/ikv.sqlite"
store_refused empty "ikv.sqlite: results store is an empty file"
mkdir -p "$TMP/store-foreign"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()" \
  "$TMP/store-foreign/ikv.sqlite"
store_refused foreign "ikv.sqlite: not an ikv results store"
mkdir -p "$TMP/store-corrupt"
"$EVAL" run "$good_cfg" --out "$TMP/store-ok" >/dev/null 2>&1 || bad "a good run failed"
"$EVAL" report --out "$TMP/store-ok" --format json >/dev/null || bad "report of a good store"
cp "$TMP/store-ok/ikv.sqlite" "$TMP/store-corrupt/ikv.sqlite"
python3 - "$TMP/store-corrupt/ikv.sqlite" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
page = int.from_bytes(b[16:18], "big") or 65536
for i in range(page, len(b)):  # every page after the first: b-tree pages become garbage
    b[i] = (i * 7919) & 0xFF
open(p, "wb").write(bytes(b))
PY
store_refused corrupt "ikv.sqlite: .*\(corrupt\|malformed\)"

# 8. Non-regular files: a FIFO would block, /dev/zero would never end.
mkfifo "$IN/fifo"
refused "FIFO as dataset" "fifo: .*not a regular file" -- timeout 60 "$EVAL" ppl -m $TB -d "$IN/fifo"
refused "/dev/zero as dataset" "/dev/zero: .*not a regular file" -- timeout 60 "$EVAL" ppl -m $TB -d /dev/zero

# 9. Messages name the file.
refused "empty text file" "empty.txt: text file is empty" -- "$EVAL" ppl -m $TB -d "$IN/empty.txt"
refused "directory as dataset" "in: .*is a directory" -- "$EVAL" ppl -m $TB -d "$IN"
refused "/dev/null as dataset" "/dev/null: .*not a regular file" -- "$EVAL" ppl -m $TB -d /dev/null
printf 'one two' >"$IN/short.txt"
refused "text shorter than a window" "short.txt: the text has [0-9]* tokens" -- "$EVAL" ppl -m $TB -d "$IN/short.txt" -c 64
refused "inspect --text DIR" "in: .*is a directory" -- "$EVAL" inspect -m $TB --text "$IN"
cp -r "$ROOT/$TB" "$IN/bad-index" && chmod -R u+w "$IN/bad-index"
printf '{"weight_map": {"model.embed_tokens.weight": "../model.safetensors"}}' >"$IN/bad-index/model.safetensors.index.json"
refused "index with a path as shard" "bad-index/model.safetensors.index.json: shard name" -- "$EVAL" ppl -m "$IN/bad-index"
head -c 4096 /dev/urandom >"$IN/binary.txt"
refused "binary text" "binary.txt: not UTF-8 text" -- "$EVAL" ppl -m $TB -d "$IN/binary.txt"

# 10. No partial outputs.
refused "inspect --positions 0" "positions: must be at least 1" -- "$EVAL" inspect -m $TB --prompt "Hello" --positions 0 -o .
refused "generate -n -1" "n: must be at least 1" -- "$EVAL" generate -m $TB -p "Hello" -n -1

# 11. Nonsense that used to be accepted silently.
refused "--wbits without --quant" "wbits requires --quant" -- "$EVAL" ppl -m $TB --wbits 3
refused "--group without --quant" "group requires --quant" -- "$EVAL" ppl -m $TB --group 64
touch "$IN/w.quant.safetensors"
refused "--quantized with --quant" "quant excludes --quantized" -- \
  "$EVAL" ppl -m $TB --quantized "$IN/w.quant.safetensors" --quant rtn --wbits 3
refused "--intactkv-size beyond the prefix" "IntactKV size 100000 exceeds the 1 tokens" -- \
  "$EVAL" ppl -m $TB --intactkv bos --intactkv-size 100000
refused "same model path twice" "twice.yaml:1:.*is already listed as" -- \
  "$EVAL" run "$(config twice "{path: $TB, name: a}, {path: $TB, name: b}" "$PPL_TASK")" --out .
(cd "$IN" && "$EVAL" intactkv build -m $TB --prefix bos -o "$IN/tb.ikv.safetensors" >/dev/null 2>&1) || bad "building a prefix"
python3 - "$IN/tb.ikv.safetensors" "$IN/oov.ikv.safetensors" "$IN/dup.ikv.safetensors" <<'PY'
import json, struct, sys
src, oov, dup = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
data = raw[8 + n:]
def write(path, header_text):
    b = header_text.encode()
    b += b" " * (-len(b) % 8)
    open(path, "wb").write(struct.pack("<Q", len(b)) + b + data)
h2 = dict(h); h2["__metadata__"] = dict(h["__metadata__"], prefix_tokens="[99999999]")
write(oov, json.dumps(h2))
text = json.dumps(h)  # the first tensor entry written twice
first = next(k for k in h if k != "__metadata__")
write(dup, text[:-1] + ", " + json.dumps(first) + ": " + json.dumps(h[first]) + "}")
PY
refused "out-of-vocabulary prefix ids" "oov.ikv.safetensors: prefix token id 99999999 is outside" -- \
  "$EVAL" ppl -m $TB --intactkv "$IN/oov.ikv.safetensors"
refused "duplicate tensor name" "dup.ikv.safetensors: safetensors header names tensor .* twice" -- \
  "$EVAL" ppl -m $TB --intactkv "$IN/dup.ikv.safetensors"
refused "tasks --tasks ''" "tasks '' names no task" -- "$EVAL" tasks -m $TB --tasks ""
echo '[]' >"$IN/empty.json"
"$EVAL" report --out "$TMP/store-ok" --format json >"$IN/current.json"
refused "compare against an empty baseline" "empty.json: baseline report is empty" -- \
  "$EVAL" compare "$IN/current.json" "$IN/empty.json"

# 3. Names are escaped in every report format (a model named like a script).
inj_cfg=$(config inject "{path: $TB, name: '<script>alert(1)</script>|x'}, {path: models/stories260K}" "$PPL_TASK")
"$EVAL" run "$inj_cfg" --out "$TMP/inject" >/dev/null 2>&1 || bad "run with an odd model name"
for f in "$TMP"/inject/report-run1.{md,html}; do
  if grep -q "<script>alert" "$f"; then bad "$(basename "$f"): the model name is written raw"
  else pass "$(basename "$f"): the model name is escaped"; fi
done
grep -qF '&lt;script&gt;alert(1)&lt;/script&gt;\|x' "$TMP/inject/report-run1.md" && pass "md: cell border escaped" ||
  bad "md: $(grep -m1 script "$TMP/inject/report-run1.md")"
finish
