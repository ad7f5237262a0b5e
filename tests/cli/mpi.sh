#!/usr/bin/env bash
# ikv-eval run under mpirun (loopback, oversubscribed, one OpenMP thread per rank): -np 1, 2 and 3
# store bit-identical metrics and per-item outcomes, with PPL and QA cells split over ranks; each
# shared artifact is made once; a worker killed with SIGKILL mid-unit is lost, its unit re-queued,
# and the run completes (mpirun --enable-recovery) with the same metrics as -np 1.
source "$(dirname "$0")/common.bash"
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 0; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --bind-to none)
CONFIG=configs/mpi-small.yaml
RUN=(run "$CONFIG" --threads 1 --split-tokens 500 --mpi-timeout 5)

# A build without MPI refuses to run under mpirun: nothing to test then.
if "${MPIRUN[@]}" -np 2 "$EVAL" "${RUN[@]}" --out "$TMP/probe" --dry-run >/dev/null 2>"$TMP/probe.log"; then :; else
  grep -q "built without MPI" "$TMP/probe.log" && { echo "SKIP: ikv-eval built without MPI"; exit 0; }
  cat "$TMP/probe.log"; bad "dry run under mpirun"
fi

# Metrics and per-item outcomes of every cell of the latest run, byte for byte (no timings).
dump_store() {
  python3 - "$1/ikv.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute("select max(id) from runs").fetchone()[0]
keys = [k for (k,) in db.execute("select cell_key from run_cells where run_id=? order by ordinal", (run,))]
for k in keys:
    for row in db.execute("select name, quote(value), quote(stderr), n from metrics where cell_key=? order by name", (k,)):
        print(k[:16], *row)
    for m, blob in db.execute("select metric, outcomes from item_outcomes where cell_key=? order by metric", (k,)):
        print(k[:16], m, blob.hex())
PY
}

for np in 1 2 3; do
  start=$(date +%s%N)
  "${MPIRUN[@]}" -np $np "$EVAL" "${RUN[@]}" --out "$TMP/np$np" >"$TMP/np$np.md" 2>"$TMP/np$np.log" ||
    { cat "$TMP/np$np.log"; bad "-np $np run"; }
  echo "  -np $np: $(( ($(date +%s%N) - start) / 1000000 )) ms"
  "$EVAL" report --out "$TMP/np$np" --latest --format json >"$TMP/np$np.json"
  dump_store "$TMP/np$np" >"$TMP/np$np.dump"
done
cells=$(cut -d' ' -f1 "$TMP/np1.dump" | sort -u | wc -l)
[[ $cells -eq 12 ]] && pass "-np 1 stored $cells cells" || bad "-np 1 stored $cells cells, want 12"
grep -q "split into parts" "$TMP/np3.log" && grep -q "part 2/" "$TMP/np3.log" && pass "cells were split over ranks" ||
  bad "no split cells: $(cat "$TMP/np3.log")"
for np in 2 3; do
  cmp -s "$TMP/np1.dump" "$TMP/np$np.dump" && pass "-np $np: metrics and outcomes bit-identical to -np 1" ||
    { diff "$TMP/np1.dump" "$TMP/np$np.dump" | head; bad "-np $np differs from -np 1"; }
  cmp -s <(report_results "$TMP/np1.json") <(report_results "$TMP/np$np.json") && pass "-np $np: identical JSON results" ||
    bad "-np $np JSON results differ"
  cmp -s <(report_table "$TMP/np1.md") <(report_table "$TMP/np$np.md") && pass "-np $np: identical table" ||
    bad "-np $np table differs"
done
dups=$(grep -o "artifact [0-9a-f]* made by" "$TMP/np3.log" | sort | uniq -d)
made=$(grep -c "artifact [0-9a-f]* made by" "$TMP/np3.log" || true)
[[ -z "$dups" && $made -ge 3 ]] && pass "$made artifacts, each made once (-np 3)" || bad "artifacts made twice: $dups"
grep -q "rank 2$" "$TMP/np3.log" && grep -q "rank 1$" "$TMP/np3.log" && pass "ranks 1 and 2 computed" ||
  bad "workers idle: $(cat "$TMP/np3.log")"

# Killed worker: SIGKILL rank 2 right after it starts a testbed-26M unit.
"${MPIRUN[@]}" --enable-recovery -np 3 "$EVAL" "${RUN[@]}" --out "$TMP/killed" >"$TMP/killed.md" 2>"$TMP/killed.log" &
mpi_pid=$!
victim=""
for _ in $(seq 1 1200); do
  if grep -q "testbed-26M.*started on rank 2" "$TMP/killed.log" 2>/dev/null; then
    for d in /proc/[0-9]*; do  # the rank-2 ikv-eval of this run
      grep -qzxF -- "$TMP/killed" "$d/cmdline" 2>/dev/null &&
        grep -qzx OMPI_COMM_WORLD_RANK=2 "$d/environ" 2>/dev/null && victim=${d#/proc/}
    done
    break
  fi
  sleep 0.05
done
if [[ -n "$victim" ]]; then kill -9 "$victim"; pass "killed rank 2 (pid $victim) mid-unit"; else bad "rank 2 never started a testbed-26M unit"; fi
rc=0; wait "$mpi_pid" || rc=$?
[[ $rc -eq 0 ]] && pass "the run completed (exit 0) without rank 2" || { cat "$TMP/killed.log"; bad "killed run exit $rc"; }
grep -q "rank 2: no message for 5 s: lost; re-queued" "$TMP/killed.log" && pass "rank 2 lost, its unit re-queued" ||
  bad "no re-queue in the log: $(cat "$TMP/killed.log")"
dump_store "$TMP/killed" >"$TMP/killed.dump"
cmp -s "$TMP/np1.dump" "$TMP/killed.dump" && pass "killed-worker run: metrics bit-identical to -np 1" ||
  { diff "$TMP/np1.dump" "$TMP/killed.dump" | head; bad "killed-worker run differs"; }
finish
