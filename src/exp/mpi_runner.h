// `ikv-eval run` over MPI ranks: the transport behind exp/distributed.h, and how a process finds
// out that it is one rank of several. Compiled with MPI when CMake finds it (IKV_HAVE_MPI);
// without it join_mpi_job always answers "alone" and the rest is never called.
//
// A process joins MPI only when a launcher says it started more than one rank
// (OMPI_COMM_WORLD_SIZE from mpirun, PMI_SIZE from PMI launchers, SLURM_STEP_NUM_TASKS from
// srun; IKV_MPI=0 opts out), so a plain `ikv-eval run` never touches MPI, and `-np 1` is a plain
// run. Rank 0 coordinates (plans, owns the store, writes the reports) and also computes on a
// worker thread; every other rank is a worker. All of them read the same config and data paths.
//
// Launch lines:
//   mpirun -np 4 ikv-eval run CONFIG --threads 8            one machine, or with -H/--hostfile
//   mpirun --oversubscribe -np 3 ikv-eval run CONFIG --threads 1   more ranks than cores
//   srun --mpi=pmix -N 16 --ntasks-per-node=1 -c 32 --kill-on-bad-exit=0
//        ikv-eval run CONFIG --threads 32                  Slurm (one line; or salloc + mpirun)
// A killed worker: OpenMPI 4.1's mpirun aborts the whole job when any rank dies, unless started
// with `--enable-recovery`; then the coordinator notices the silence (--mpi-timeout), re-queues
// the lost rank's unit and the run completes, and the surviving ranks skip MPI_Finalize (which
// would wait for the dead rank forever). Without that flag, re-running the same command resumes
// from the store: every finished cell was committed as it came in.
#pragma once
#include <functional>
#include <memory>

#include "exp/runner.h"

namespace ikv::exp {

struct MpiJob {
  int rank = 0, size = 1;
  bool distributed() const { return size > 1; }
};

// Joins the MPI job when launched as one of several ranks; otherwise {0, 1}, MPI untouched.
MpiJob join_mpi_job();
// MPI_Finalize when `finalize` (all ranks must agree: a dead rank makes it hang); no-op alone.
void leave_mpi_job(const MpiJob& job, bool finalize);

using WorkerFactory = std::function<std::unique_ptr<WorkerContext>()>;

// Rank 0: coordinates all ranks, rank 0 itself computing through `local_worker`. Call
// leave_mpi_job(job, summary.clean()) when done with the results.
RunSummary run_plan_mpi(const MpiJob& job, const Plan& plan, Store& store, const WorkerFactory& local_worker,
                        const RunOptions& opt);
// Ranks >= 1: computes what rank 0 hands out until told to stop; leaves the job and returns the
// process's exit code (may not return at all when stopped in the middle of a unit).
int serve_mpi(const MpiJob& job, const WorkerFactory& setup, const RunOptions& opt);

}  // namespace ikv::exp
