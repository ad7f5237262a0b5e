#include "exp/dist_scheduler.h"

#include <algorithm>

#include "io/error.h"

namespace ikv::exp {

Scheduler::Scheduler(const Plan& plan, const std::vector<size_t>& todo, const std::vector<int>& parts,
                     const std::vector<ArtifactRecord>& known, int max_attempts)
    : plan_(plan), max_attempts_(max_attempts) {
  if (parts.size() != todo.size()) fail("scheduler: ", parts.size(), " part counts for ", todo.size(), " cells");
  for (size_t i = 0; i < todo.size(); ++i) {
    if (todo[i] >= plan.cells.size()) fail("scheduler: cell ", todo[i], " is not in the plan");
    const int n = std::max(1, parts[i]);
    for (int p = 0; p < n; ++p) pending_.push_back({todo[i], p, n, 1});
  }
  std::sort(pending_.begin(), pending_.end(),
            [](const Pending& a, const Pending& b) { return std::tie(a.cell, a.part) < std::tie(b.cell, b.part); });
  for (const ArtifactRecord& a : known) known_[a.key] = a;
}

namespace {
std::string data_key(const Cell& c) { return c.model.path + "|" + task_label(c.task); }
}  // namespace

std::vector<std::string> Scheduler::artifact_keys(size_t cell) const {
  std::vector<std::string> keys;
  for (const std::string* k : {&plan_.cells[cell].quant_key, &plan_.cells[cell].intactkv_key})
    if (!k->empty()) keys.push_back(*k);
  return keys;
}

const WorkUnit* Scheduler::running(int worker) const {
  auto it = running_.find(worker);
  return it == running_.end() ? nullptr : &it->second;
}

std::vector<size_t> Scheduler::unfinished_cells() const {
  std::set<size_t> cells;
  for (const Pending& p : pending_) cells.insert(p.cell);
  for (const auto& [w, u] : running_) cells.insert(u.cell);
  return {cells.begin(), cells.end()};
}

std::optional<WorkUnit> Scheduler::assign(int worker) {
  if (running_.count(worker)) fail("scheduler: worker ", worker, " already runs a unit");
  if (stopped_) return std::nullopt;
  const std::set<std::string>& held = held_[worker];
  int best = -1, best_score = -1;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const Cell& cell = plan_.cells[pending_[i].cell];
    int score = (last_model_[worker] == cell.model.path ? 2 : 0) + (warm_[worker].count(data_key(cell)) ? 1 : 0);
    bool blocked = false;
    for (const std::string& k : artifact_keys(cell.index)) {
      if (held.count(k))
        score += 4;
      else if (known_.count(k))
        score += 1;
      else if (auto m = making_.find(k); m != making_.end() && m->second != worker)
        blocked = true;
    }
    if (!blocked && score > best_score) best = static_cast<int>(i), best_score = score;
    if (plan_order_ && best >= 0) break;
  }
  if (best < 0) return std::nullopt;
  const Pending p = pending_[best];
  pending_.erase(pending_.begin() + best);
  WorkUnit u;
  u.cell = p.cell;
  u.key = plan_.cells[p.cell].key;
  u.part = p.part;
  u.parts = p.parts;
  u.attempt = p.attempt;
  for (const std::string& k : artifact_keys(p.cell)) {
    if (auto it = known_.find(k); it != known_.end())
      u.artifacts.push_back(it->second);
    else if (!held.count(k))
      making_.emplace(k, worker);
  }
  last_model_[worker] = plan_.cells[p.cell].model.path;
  warm_[worker].insert(data_key(plan_.cells[p.cell]));
  return running_[worker] = u;
}

std::optional<Scheduler::Finished> Scheduler::fail_cell(size_t cell, int parts, const std::string& error) {
  failed_.insert(cell);
  parts_.erase(cell);
  std::erase_if(pending_, [&](const Pending& p) { return p.cell == cell; });
  Finished f;
  f.cell = cell;
  f.error = error;
  f.parts = parts;
  f.seconds = seconds_[cell];
  return f;
}

std::optional<Scheduler::Finished> Scheduler::complete(int worker, const UnitResult& r) {
  auto it = running_.find(worker);
  if (it == running_.end() || it->second.cell != r.cell || it->second.part != r.part || it->second.parts != r.parts)
    fail("worker ", worker, " returned cell ", r.cell, " part ", r.part, "/", r.parts, ", which it does not run");
  running_.erase(it);
  std::erase_if(making_, [&](const auto& m) { return m.second == worker; });
  for (const ArtifactRecord& a : r.new_artifacts) known_[a.key] = a;
  if (r.ok)
    for (const std::string& k : artifact_keys(r.cell)) held_[worker].insert(k);
  if (failed_.count(r.cell)) return std::nullopt;  // another part already failed the cell
  seconds_[r.cell] += r.seconds;
  if (!r.ok) return fail_cell(r.cell, r.parts, r.error);

  if (r.parts == 1) {
    Finished f;
    f.cell = r.cell;
    f.ok = true;
    f.record = r.record;
    f.seconds = seconds_[r.cell];
    return f;
  }
  auto& slots = parts_[r.cell];
  slots.resize(r.parts);
  slots[r.part] = r.part_result;
  if (std::any_of(slots.begin(), slots.end(), [](const auto& s) { return !s; })) return std::nullopt;
  std::vector<CellPart> all;
  for (auto& s : slots) all.push_back(std::move(*s));
  parts_.erase(r.cell);
  Finished f;
  f.cell = r.cell;
  f.parts = r.parts;
  f.seconds = seconds_[r.cell];
  try {
    f.record = merge_parts(plan_.cells[r.cell], all);
    f.ok = true;
  } catch (const std::exception& e) {
    return fail_cell(r.cell, r.parts, e.what());
  }
  return f;
}

std::optional<Scheduler::Finished> Scheduler::lost(int worker) {
  std::erase_if(making_, [&](const auto& m) { return m.second == worker; });
  held_.erase(worker);
  warm_.erase(worker);
  auto it = running_.find(worker);
  if (it == running_.end()) return std::nullopt;
  const WorkUnit u = it->second;
  running_.erase(it);
  if (failed_.count(u.cell)) return std::nullopt;
  if (u.attempt >= max_attempts_)
    return fail_cell(u.cell, u.parts, "lost " + std::to_string(u.attempt) + " workers while running it");
  requeue(u);
  return std::nullopt;
}

void Scheduler::requeue(const WorkUnit& u) {
  const Pending p{u.cell, u.part, u.parts, u.attempt + 1};
  auto at = std::lower_bound(pending_.begin(), pending_.end(), p, [](const Pending& a, const Pending& b) {
    return std::tie(a.cell, a.part) < std::tie(b.cell, b.part);
  });
  pending_.insert(at, p);
}

}  // namespace ikv::exp
