#!/usr/bin/env bash
# Scaling of `ikv-eval run` under MPI: times CONFIG (default configs/ci.yaml) with -np 1 and
# -np 2 on this machine (one OpenMP thread per rank), prints cells/minute, and a model of the
# speed-up on more machines fitted from the -np 1 run:
#   T(N) = S + M + max(W / N + L (N − 1) / N, C)
#   S  serial: process start, planning, store commits, reports (wall time − Σ cell times at -np 1);
#      for a bigger plan it is scaled with the cell count (an upper bound: most of it is fixed)
#   M  the MPI launch (timed with `mpirun -np 2 true`), 0 for one machine
#   W  Σ cell compute times (what the ranks share; shared artifacts are made once, inside the
#      first cell that needs them)
#   L  what every rank repeats: loading each model and tokenizing its datasets (first cell of a
#      model and task − the median of that model's later cells of the task)
#   C  critical path: a cell that makes an artifact, then the longest cell waiting for it (or the
#      longest cell alone); large cells split into parts shorten it further (ignored: an upper bound)
# Usage: scripts/mpi-scaling.sh [BUILD_DIR] [CONFIG]. Needs mpirun (openmpi-bin).
set -euo pipefail
BUILD=${1:-build}
CONFIG=${2:-configs/ci.yaml}
cd "$(dirname "$0")/.."
EVAL="$BUILD/ikv-eval"
command -v mpirun >/dev/null || { echo "mpi-scaling: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 3; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
TMP=$(mktemp -d /tmp/ikv-mpi-scaling.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
for np in 1 2; do
  t0=$(now)
  mpirun --bind-to none -np $np true
  t1=$(now)
  mpirun --bind-to none -np $np "$EVAL" run "$CONFIG" --threads 1 --out "$TMP/np$np" >/dev/null 2>"$TMP/np$np.log" ||
    { cat "$TMP/np$np.log" >&2; exit 1; }
  t2=$(now)
  echo "$np $t0 $t1 $t2" >>"$TMP/times"
done

python3 - "$TMP" "$CONFIG" <<'PY'
import sqlite3, sys
tmp, config = sys.argv[1], sys.argv[2]
times = {}
for line in open(f"{tmp}/times"):
    np_, t0, t1, t2 = line.split()
    times[int(np_)] = (float(t1) - float(t0), float(t2) - float(t1))

db = sqlite3.connect(f"{tmp}/np1/ikv.sqlite")
run = db.execute("select max(id) from runs").fetchone()[0]
cells = db.execute(
    "select c.key, c.model, c.quant, c.intactkv, c.task, c.seconds from run_cells r join cells c on c.key = r.cell_key "
    "where r.run_id = ? order by r.ordinal", (run,)).fetchall()
n = len(cells)
W = sum(c[5] for c in cells)
launch1, wall1 = times[1]
S = wall1 - W
# Critical path: cells sharing an artifact (same model+quant, or same model+prefix) wait for the
# first of them, which makes it.
groups = {}
for key, model, quant, ikv, task, sec in cells:
    if quant != "fp": groups.setdefault(("quant", model, quant), []).append(sec)
    if ikv != "none": groups.setdefault(("ikv", model, ikv), []).append(sec)
C = max([c[5] for c in cells] + [g[0] + max(g[1:]) for g in groups.values() if len(g) > 1])
by_task = {}
for key, model, quant, ikv, task, sec in cells:
    by_task.setdefault((model, task), []).append(sec)
L = sum(max(0.0, v[0] - sorted(v[1:])[len(v[1:]) // 2]) for v in by_task.values() if len(v) > 1)

print(f"config {config}: {n} cells, one OpenMP thread per rank, this machine (2 cores, shared)\n")
print("| ranks | wall s | cells/min | speed-up |")
print("|---:|---:|---:|---:|")
for np_ in sorted(times):
    wall = times[np_][1]
    print(f"| {np_} | {wall:.1f} | {n / wall * 60:.1f} | {wall1 / wall:.2f}x |")
launch = times[2][0]
print(f"\nfitted from -np 1: S = {S:.1f} s serial, W = {W:.1f} s of cell compute, L = {L:.1f} s repeated per "
      f"rank, C = {C:.1f} s critical path; M = {launch:.1f} s MPI launch")

def model(N, S, W, L, C):
    return S + (launch if N > 1 else 0) + max(W / N + L * (N - 1) / N, C)

print(f"model check: -np 2 predicted {model(2, S, W, L, C):.1f} s, measured {times[2][1]:.1f} s\n")
# The paper reproduction: 5 models x 8 quantizers x 4 IntactKV variants x 12 tasks = 1920 cells;
# the work per cell as in this config, the per-rank loading per model.
k = 1920 / n
Lp = L * 5 / len({c[1] for c in cells})
print("| machines | this config: s | cells/min | speed-up | 1920 cells of this mix: min | cells/min | speed-up |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for N in (1, 2, 4, 8, 16):
    t, tp = model(N, S, W, L, C), model(N, S * k, W * k, Lp, C)
    print(f"| {N} | {t:.1f} | {n / t * 60:.1f} | {model(1, S, W, L, C) / t:.2f}x "
          f"| {tp / 60:.1f} | {1920 / tp * 60:.1f} | {model(1, S * k, W * k, Lp, C) / tp:.2f}x |")
PY
