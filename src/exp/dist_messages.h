// The messages of a distributed run (exp/runner.h), as JSON text. Doubles travel as the hex
// of their IEEE-754 bits, so a metric computed on a worker reaches the store bit for bit (NaN
// standard errors included, which plain JSON cannot carry).
//
// Worker → coordinator: {"type": "ready", "plan": DIGEST} once its plan is built (or
// {"type": "ready", "error": MESSAGE}); {"type": "result", ...UnitResult} after each unit;
// {"type": "idle"} to ask again after a "wait"; {"type": "heartbeat"} while computing.
// Coordinator → worker, answering ready/result/idle (and heartbeats once the run is over):
// {"type": "work", ...WorkUnit}, {"type": "wait"} or {"type": "stop", "finalize": BOOL}.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "exp/executor.h"
#include "exp/store.h"

namespace ikv::exp {

// One piece of work: a whole cell (parts == 1) or part `part` of a split cell.
struct WorkUnit {
  size_t cell = 0;  // index in the plan (every rank builds the same plan)
  std::string key;  // the cell's key: a worker whose plan disagrees refuses the unit
  int part = 0, parts = 1;
  std::vector<ArtifactRecord> artifacts;  // known artifacts of the cell's quant and IntactKV keys
  int attempt = 1;                        // > 1 when re-queued after a lost worker
};

struct UnitResult {
  size_t cell = 0;
  std::string key;
  int part = 0, parts = 1;
  bool ok = false;
  std::string error;                          // when !ok
  CellRecord record;                          // parts == 1: metrics and outcomes
  CellPart part_result;                       // parts > 1
  std::vector<ArtifactRecord> new_artifacts;  // artifacts the worker created for this unit
  double seconds = 0;
};

std::string hex_of_doubles(const std::vector<double>& values);
std::vector<double> doubles_of_hex(const std::string& hex);  // throws on malformed text

nlohmann::json to_json(const WorkUnit& u);
nlohmann::json to_json(const UnitResult& r);
WorkUnit work_unit_of(const nlohmann::json& j);      // throws ikv::Error on a malformed message
UnitResult unit_result_of(const nlohmann::json& j);  // throws ikv::Error on a malformed message

// sha256 over the plan's cell keys in order: equal on two ranks iff they planned the same cells.
std::string plan_digest(const Plan& plan);

}  // namespace ikv::exp
