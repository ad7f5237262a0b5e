#include "exp/runner.h"

#include <chrono>
#include <optional>
#include <utility>

#include "exp/distributed.h"

namespace ikv::exp {
namespace {

using nlohmann::json;

// The worker of a plain run, as the coordinator's link: a unit handed out is computed by `exec` in
// the caller's thread when the coordinator next listens, and its result is the answer (so the
// coordinator never counts the computing time as silence).
class InProcessWorker : public CoordinatorLink {
 public:
  InProcessWorker(const Plan& plan, const CellExecutor& exec)
      : plan_(plan), exec_(exec), reply_(json{{"type", "ready"}, {"plan", plan_digest(plan)}}) {}
  int workers() const override { return 1; }
  std::string name(int) const override { return "this process"; }
  std::optional<std::pair<int, json>> receive(double) override {
    if (unit_) reply_ = to_json(compute(*std::exchange(unit_, std::nullopt)));
    if (!reply_) return std::nullopt;
    return std::pair{0, *std::exchange(reply_, std::nullopt)};
  }
  void send(int, const json& message) override {
    const std::string type = message.at("type").get<std::string>();
    if (type == "work") unit_ = work_unit_of(message);
    if (type == "wait") reply_ = json{{"type", "idle"}};
  }

 private:
  UnitResult compute(const WorkUnit& u) {
    const auto t0 = std::chrono::steady_clock::now();
    UnitResult r;
    r.cell = u.cell, r.key = u.key;
    try {
      r.record = exec_(plan_.cells[u.cell]);
      r.ok = true;
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  const Plan& plan_;
  const CellExecutor& exec_;
  std::optional<WorkUnit> unit_;
  std::optional<json> reply_;
};

}  // namespace

RunSummary run_plan(const Plan& plan, Store& store, const CellExecutor& exec, const RunOptions& options) {
  InProcessWorker worker(plan, exec);
  return coordinate(plan, store, worker, options);
}

}  // namespace ikv::exp
