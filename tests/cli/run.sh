#!/usr/bin/env bash
# ikv-eval run end to end: a config → store → table; a second run recomputes nothing; a run killed
# with SIGKILL mid-way resumes to the same metrics as an uninterrupted run; compare flags an
# altered metric; bad configs exit 2 with file:line:column and write nothing.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
cat >"$TMP/small.yaml" <<'YAML'
models: [{path: models/stories260K}]
quantizers: [fp, {method: rtn, wbits: 4, group: -1}]
kv_bits: [16]
intactkv: [none, bos]
tasks:
  ppl: {datasets: [wikitext2], ctx: 128, windows: 6}
  qa: {tasks: [arc_easy, piqa], limit: 12}
YAML

# Uninterrupted run.
"$EVAL" run "$TMP/small.yaml" --out "$TMP/clean" --threads 2 >"$TMP/clean.md" 2>"$TMP/clean.log" || { cat "$TMP/clean.log"; bad "clean run"; }
grep -q "| RTN W4 |" "$TMP/clean.md" && grep -q "IntactKV_\[B\]" "$TMP/clean.md" && pass "table printed" || bad "table: $(cat "$TMP/clean.md")"
"$EVAL" report --out "$TMP/clean" --latest --format json >"$TMP/clean.json"

# Second run: everything reused, in well under the first run's time.
start=$(date +%s%N)
"$EVAL" run "$TMP/small.yaml" --out "$TMP/clean" >"$TMP/again.md" 2>"$TMP/again.log"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "0 computed" "$TMP/again.log" && pass "second run recomputes nothing (${elapsed_ms} ms)" || bad "second run: $(cat "$TMP/again.log")"
cmp -s <(report_table "$TMP/clean.md") <(report_table "$TMP/again.md") && pass "same table" || bad "tables differ"
grep -q "^| ikv build | " "$TMP/clean.md" && grep -q "^| config sha256 | [0-9a-f]\{64\} |" "$TMP/clean.md" &&
  grep -q "^| data wikitext2 | [0-9a-f]\{64\} |" "$TMP/clean.md" && grep -q "^## Wall time per cell" "$TMP/clean.md" &&
  pass "the report carries its provenance" || bad "no provenance in the report"

# Killed mid-way (SIGKILL after the first finished cells), then resumed.
"$EVAL" run "$TMP/small.yaml" --out "$TMP/killed" --threads 2 >/dev/null 2>"$TMP/killed.log" &
pid=$!
for _ in $(seq 1 600); do grep -q "^\[ *3/" "$TMP/killed.log" 2>/dev/null && break; sleep 0.05; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
"$EVAL" run "$TMP/small.yaml" --out "$TMP/killed" --threads 2 >/dev/null 2>"$TMP/resume.log" || { cat "$TMP/resume.log"; bad "resume failed"; }
grep -q "reused" "$TMP/resume.log" && pass "resumed: $(grep -o '[0-9]* reused' "$TMP/resume.log")" || bad "resume log"
"$EVAL" report --out "$TMP/killed" --latest --format json >"$TMP/killed.json"
python3 - "$TMP/clean.json" "$TMP/killed.json" <<'PY' && pass "resumed metrics identical" || bad "resumed metrics differ"
import json, sys
a, b = (sorted(json.load(open(f))["results"], key=lambda e: json.dumps(e, sort_keys=True)) for f in sys.argv[1:])
key = lambda e: (e["model"], e["quant"], e["kv_bits"], e["intactkv"], e["task"], e["metric"])
sys.exit(0 if {key(e): e["value"] for e in a} == {key(e): e["value"] for e in b} else 1)
PY

# compare: identical reports pass; an altered metric is flagged (exit 1).
"$EVAL" compare "$TMP/killed.json" "$TMP/clean.json" >/dev/null && pass "compare identical" || bad "compare identical"
python3 - "$TMP/clean.json" "$TMP/altered.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
for r in rows:
    if r["metric"] == "ppl":
        r["value"] *= 1.02
        break
json.dump(rows, open(sys.argv[2], "w"))
PY
rc=0; "$EVAL" compare "$TMP/clean.json" "$TMP/altered.json" >"$TMP/cmp.md" || rc=$?
[[ $rc -eq 1 ]] && grep -q "REGRESSED\|IMPROVED" "$TMP/cmp.md" && pass "compare flags the altered ppl" || bad "compare rc=$rc"

# Bad configs: exit 2, FILE:LINE:COLUMN, nothing written.
printf 'models: [{path: models/stories260K}]\nquantizers:\n  - {method: rtn, wbit: 3}\ntasks: {ppl: {}}\n' >"$TMP/typo.yaml"
expect_error "unknown key with did-you-mean" "typo.yaml:3:.*wbits" -- "$EVAL" run "$TMP/typo.yaml" --out "$TMP/bad"
printf 'models: [{path: models/stories260K}\n' >"$TMP/broken.yaml"
expect_error "malformed YAML" "broken.yaml:" -- "$EVAL" run "$TMP/broken.yaml" --out "$TMP/bad"
expect_error "missing config" "nope.yaml" -- "$EVAL" run "$TMP/nope.yaml" --out "$TMP/bad"
[[ ! -e "$TMP/bad" ]] && pass "nothing written for bad configs" || bad "bad config wrote $TMP/bad"
finish
