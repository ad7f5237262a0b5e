#include "exp/mpi_runner.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "io/error.h"

#ifdef IKV_HAVE_MPI
#include <mpi.h>

#include <chrono>
#include <list>
#endif

namespace ikv::exp {
namespace {

// The rank count a launcher announced, 1 when none did.
int launcher_size() {
  const char* off = std::getenv("IKV_MPI");
  if (off && std::string(off) == "0") return 1;
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

}  // namespace

#ifdef IKV_HAVE_MPI
namespace {

constexpr int kTag = 7;
using Clock = std::chrono::steady_clock;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI ", what, ": ", std::string(text, len));
}

// Sends that may outlive the call: the buffer lives until MPI is done with it.
class Outbox {
 public:
  void send(int dest, const std::string& message) {
    reap();
    auto& s = sends_.emplace_back();
    s.buffer = message;
    check(MPI_Isend(s.buffer.data(), static_cast<int>(s.buffer.size()), MPI_CHAR, dest, kTag, MPI_COMM_WORLD,
                    &s.request),
          "send");
  }
  void reap() {
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      it = done ? sends_.erase(it) : std::next(it);
    }
  }
  // Waits up to `seconds` for every send to complete; true if they all did.
  bool drain(double seconds) {
    const auto t0 = Clock::now();
    while (reap(), !sends_.empty()) {
      if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

 private:
  struct Send {
    std::string buffer;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  std::list<Send> sends_;
};

// A message from `source` (MPI_ANY_SOURCE: anyone) if one is waiting.
std::optional<std::pair<int, std::string>> try_receive(int source) {
  int flag = 0;
  MPI_Status st;
  check(MPI_Iprobe(source, kTag, MPI_COMM_WORLD, &flag, &st), "probe");
  if (!flag) return std::nullopt;
  int count = 0;
  MPI_Get_count(&st, MPI_CHAR, &count);
  std::string body(static_cast<size_t>(count), '\0');
  check(MPI_Recv(body.data(), count, MPI_CHAR, st.MPI_SOURCE, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
  return std::pair{st.MPI_SOURCE, std::move(body)};
}

// Rank 0's link: worker 0 is the local thread, worker r >= 1 is rank r.
class MpiCoordinatorLink : public CoordinatorLink {
 public:
  explicit MpiCoordinatorLink(int size) : size_(size), local_(1) {}
  int workers() const override { return size_; }
  std::string name(int worker) const override { return "rank " + std::to_string(worker); }
  std::optional<std::pair<int, nlohmann::json>> receive(double timeout_s) override {
    const auto t0 = Clock::now();
    while (true) {
      outbox_.reap();
      if (auto m = try_receive(MPI_ANY_SOURCE))
        return std::pair{m->first, nlohmann::json::parse(m->second, nullptr, false)};
      // Waiting on the local queue doubles as the pause between probes.
      if (auto m = local_.receive(0.001)) return m;
      if (std::chrono::duration<double>(Clock::now() - t0).count() >= timeout_s) return std::nullopt;
    }
  }
  void send(int worker, const nlohmann::json& message) override {
    if (worker == 0)
      local_.send(0, message);
    else
      outbox_.send(worker, message.dump());
  }
  WorkerLink& local_worker() { return local_.worker(0); }
  bool drain(double seconds) { return outbox_.drain(seconds); }

 private:
  int size_;
  LocalHub local_;
  Outbox outbox_;
};

class MpiWorkerLink : public WorkerLink {
 public:
  std::optional<std::string> receive(double timeout_s) override {
    const auto t0 = Clock::now();
    while (true) {
      outbox_.reap();
      if (auto m = try_receive(0)) return std::move(m->second);
      if (std::chrono::duration<double>(Clock::now() - t0).count() >= timeout_s) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void send(const std::string& message) override { outbox_.send(0, message); }
  bool drain(double seconds) { return outbox_.drain(seconds); }

 private:
  Outbox outbox_;
};

WorkerHooks hooks_for(const WorkerFactory& factory, std::shared_ptr<std::unique_ptr<WorkerContext>> holder) {
  WorkerHooks h;
  h.setup = [factory, holder] {
    *holder = factory();
    return plan_digest((*holder)->plan());
  };
  h.run = [holder](const WorkUnit& u) { return (*holder)->run(u); };
  return h;
}

}  // namespace

MpiJob join_mpi_job() {
  if (launcher_size() <= 1) return {};
  int provided = 0;
  // Only the thread that called this talks MPI; compute threads never do.
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
  // A dead peer must come back as an error code (or silence), not abort this process.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MpiJob job;
  MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &job.size);
  if (job.size == 1) MPI_Finalize();
  return job;
}

void leave_mpi_job(const MpiJob& job, bool finalize) {
  if (job.distributed() && finalize) MPI_Finalize();
}

RunSummary run_plan_mpi(const MpiJob& job, const Plan& plan, Store& store, const WorkerFactory& local_worker,
                        const RunOptions& opt) {
  MpiCoordinatorLink link(job.size);
  auto holder = std::make_shared<std::unique_ptr<WorkerContext>>();
  ServeOutcome local_outcome;
  std::thread local([&] { local_outcome = serve(link.local_worker(), hooks_for(local_worker, holder), opt); });
  RunSummary s;
  try {
    s = coordinate(plan, store, link, opt);
  } catch (...) {
    link.send(0, {{"type", "stop"}, {"finalize", false}});  // the local worker must not outlive the link
    local.join();
    throw;
  }
  local.join();
  if (s.clean() && !link.drain(opt.timeout)) s.lost.push_back("(a stop message was never delivered)");
  return s;
}

int serve_mpi(const MpiJob& job, const WorkerFactory& setup, const RunOptions& opt) {
  MpiWorkerLink link;
  auto holder = std::make_shared<std::unique_ptr<WorkerContext>>();
  const ServeOutcome o = serve(link, hooks_for(setup, holder), opt);
  const std::string me = "rank " + std::to_string(job.rank);
  if (!o.error.empty()) std::fprintf(stderr, "%s: %s; giving up\n", me.c_str(), o.error.c_str());
  const bool finalize = o.stopped && o.finalize && link.drain(opt.timeout);
  leave_mpi_job(job, finalize);
  if (o.abandoned_unit) {
    // The compute thread still runs a unit nobody needs any more: leave without waiting for it.
    std::fflush(nullptr);
    std::_Exit(0);
  }
  return o.error.empty() ? 0 : 3;
}

#else  // no MPI in this build

MpiJob join_mpi_job() {
  // Several plain runs on one store would race each other: refuse instead.
  if (const int n = launcher_size(); n > 1)
    fail("started as one of ", n, " MPI ranks, but this ikv was built without MPI (install libopenmpi-dev and "
         "rebuild, or run without mpirun/srun)");
  return {};
}
void leave_mpi_job(const MpiJob&, bool) {}
RunSummary run_plan_mpi(const MpiJob&, const Plan&, Store&, const WorkerFactory&, const RunOptions&) {
  fail("this ikv was built without MPI");
}
int serve_mpi(const MpiJob&, const WorkerFactory&, const RunOptions&) { fail("this ikv was built without MPI"); }

#endif

}  // namespace ikv::exp
