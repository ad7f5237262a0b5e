// A config expanded into cells: model x quantizer x kv_bits x IntactKV variant x task unit, each
// with a content key (hash of everything that decides its result) so finished cells are found
// again in the results store and expensive artifacts are shared between cells.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "exp/config.h"

namespace ikv::exp {

// Part of every key: bump it whenever a change to the engine or evaluation may change a number,
// so stale results are recomputed instead of reused.
inline constexpr const char* kEngineVersion = "ikv-0.1.0";

// Task units: the smallest piece of a task that is one cell.
struct PplUnit {  // one perplexity dataset
  std::string dataset;
  int ctx = 2048;
  int windows = 0;
  bool operator==(const PplUnit&) const = default;
};
struct QaUnit {  // one zero-shot QA task
  std::string task;
  int limit = 0;
  std::string bos = "always";
  bool operator==(const QaUnit&) const = default;
};
using TaskUnit = std::variant<PplUnit, QaUnit, MmluTask, MseSweepTask, KldTask, QuantErrorTask>;

std::string task_kind(const TaskUnit& task);  // "ppl" | "qa" | "mmlu" | "mse_sweep" | "kld" | "quant_error"
// "wikitext2" (file stem for paths), "arc_easy", or the kind; settings that change what is
// measured away from the paper's are appended: "arc_easy/no-bos", "mmlu/lm-eval".
std::string task_label(const TaskUnit& task);

// Identities the keys are built from, supplied by the caller (the CLI hashes model files and
// datasets; tests pass fakes). Each is called once per distinct argument.
struct Identities {
  std::function<std::string(const ModelSpec&)> model;      // fingerprint of the model's files
  std::function<std::string(const std::string&)> dataset;  // checksum of a dataset name or path
  // sha256 of an IntactKV file whose config entry gives no `sha256:`; may be empty otherwise.
  std::function<std::string(const std::string&)> file;
};

struct Cell {
  size_t index = 0;  // position in the plan
  ModelSpec model;
  QuantizerSpec quant;
  int kv_bits = 16;
  KvQuantSpec kv;         // how the quantized KV cache is quantized (default with kv_bits 16)
  IntactKVSpec intactkv;  // Kind::None for mse_sweep (it sweeps prefix sizes) and quant_error cells
  TaskUnit task;
  int64_t seed = 0;          // the config's seed: draws calibration samples (GPTQ/AWQ, IntactKV)
  std::string key;           // content key of the result
  std::string quant_key;     // quant_artifact_key; "" for fp and quant_error (quantizes on its own)
  std::string intactkv_key;  // intactkv_artifact_key; "" for none
  double est_cost = 0;       // estimate_tokens(cell); the runner's ETA weights cells by it

  // "testbed-26M rtn-w3g128 kv16 bos wikitext2"
  std::string describe() const;
  // The method as stored and reported: the quantizer's label, then the KV scheme's ("rtn-w3g128",
  // "quarot-w4a4-kivi128", "rtn-w3g128-sinks").
  std::string quant_label() const;
};

struct Plan {
  ExperimentConfig config;
  std::vector<Cell> cells;
  // The identities the keys were made of, for provenance: "model:NAME" -> fingerprint,
  // "data:NAME" -> checksum (datasets and task data), "file:PATH" -> sha256 (IntactKV files).
  std::map<std::string, std::string> identities;
};

// Expands the config (rules in plan.cc). Throws ikv::Error when an identity is missing.
Plan make_plan(const ExperimentConfig& config, const Identities& ids);

// Keys of shared artifacts: packed quantized weights ("" for fp), and an IntactKV prefix ("" for
// none; a prefix taken from the FP model does not depend on the quantizer or kv_bits, a
// calibrated one does).
std::string quant_artifact_key(const ModelSpec& model, const QuantizerSpec& quant, const Identities& ids,
                               int64_t seed);
std::string intactkv_artifact_key(const ModelSpec& model, const QuantizerSpec& quant, int kv_bits,
                                  const IntactKVSpec& intactkv, const Identities& ids, int64_t seed);

// Crude cost of a cell in tokens through the model (known dataset sizes, limits, windows).
double estimate_tokens(const Cell& cell);
using CostFn = std::function<double(const Cell&)>;

// What a cell is expected to take on this machine (exp/estimate.h makes it).
struct CellEstimate {
  double seconds = 0;         // the cell's own evaluation
  double quant_seconds = 0;   // making its packed weights: paid once per quant_key
  double prefix_seconds = 0;  // calibrating its IntactKV prefix: paid once per intactkv_key
  double peak_bytes = 0;
  bool fits = true;  // peak_bytes within the memory available
};
using EstimateFn = std::function<CellEstimate(const Cell&)>;

// The --dry-run table: index, model, quant, kv, intactkv, task, key prefix, estimated cost in
// forward tokens, with `estimate` the expected time and peak memory ("too big" where it does not
// fit), and a status column (done / todo) when `is_done` is given; a total line at the end.
std::string render_plan(const Plan& plan, const CostFn& cost = estimate_tokens,
                        const std::function<bool(const std::string& key)>& is_done = {},
                        const EstimateFn& estimate = {});

}  // namespace ikv::exp
