// The real cell executor behind `ikv-eval run`: turns a plan cell into numbers. Loaded models,
// quantized weights, IntactKV prefixes and tokenized datasets are cached across cells of a run;
// quantized weights and IntactKV prefixes are also saved as artifacts
// (results/artifacts/KEY.{quant,ikv}.safetensors) and recorded in an artifact index (the store,
// or in an MPI worker the coordinator's list), so a later run or another rank reuses them.
//
// Large cells can be computed in parts: PPL windows and QA/MMLU documents are independent items,
// so run_part computes an item range and merge_parts rebuilds the cell from its parts, summing in
// item order. run() computes a splittable cell as its single part and merges it the same way,
// which is what makes a split cell bit-identical to a whole one.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/kv_scheme.h"
#include "eval/tasks.h"
#include "exp/model_setup.h"
#include "exp/plan.h"
#include "exp/store.h"
#include "intactkv/prefix.h"

namespace ikv::exp {

// Part `part` of `parts` of a cell: items [begin, end) = [items·part/parts, items·(part+1)/parts).
// Holds the per-item values the cell's metrics are computed from.
struct CellPart {
  int part = 0, parts = 1;
  int64_t items = 0;  // the whole cell's items (PPL windows, documents), as this part saw them
  int64_t begin = 0, end = 0;
  int64_t tokens_scored = 0;          // PPL: scored tokens of the part's windows
  // per item: "window_nll" and, with kv_protect sinks, "sink_tokens" (PPL); "acc", "acc_norm",
  // "logprob" (QA)
  std::vector<ItemOutcomes> values;
  std::vector<std::string> subjects;  // MMLU: per item
  std::vector<ItemOutcomes> extra;    // whole-cell outcomes passed through ("calibration_loss")
};

// PPL, QA and MMLU cells can be split into parts; mse_sweep, kld and quant_error cells cannot.
bool splittable(const Cell& cell);
std::pair<int64_t, int64_t> part_range(int64_t items, int part, int parts);
// The cell's record from all of its parts, given in part order (checked: contiguous, same items).
CellRecord merge_parts(const Cell& cell, const std::vector<CellPart>& parts);

// Identities for plan keys: model files' and datasets' sha256 (cached by size and mtime). Reads
// only the data, so a plan can be made (and checked) before the results store is opened.
Identities data_identities(const std::string& data_root);

class Executor {
 public:
  Executor(std::string data_root, std::string results_dir, ArtifactIndex& artifacts);
  ~Executor();
  CellRecord run(const Cell& cell);
  // One part of a splittable cell (splittable(cell) must hold).
  CellPart run_part(const Cell& cell, int part, int parts);

 private:
  const LoadedModel& fp_model(const ModelSpec& m);
  const model::Weights& weights_for(const Cell& cell);
  const intactkv::Prefix* prefix_for(const Cell& cell);
  // The cell's KV scheme and, with static scales, the scales calibrated for its weights and prefix.
  engine::EngineOptions engine_options(const Cell& cell);
  const std::vector<int32_t>& token_stream(const ModelSpec& m, const std::string& dataset);

  CellRecord run_task(const Cell& cell);
  CellPart run_ppl_part(const Cell& cell, int part, int parts);
  CellPart run_qa_part(const Cell& cell, int part, int parts);
  CellRecord run_mse_sweep(const Cell& cell);
  CellRecord run_kld(const Cell& cell);
  CellRecord run_quant_error(const Cell& cell);
  // The loss curve of a calibrated prefix (kept in the prefix file's settings), for the report.
  std::optional<ItemOutcomes> calibration_loss(const Cell& cell);

  std::string data_root_, results_dir_;
  ArtifactIndex& store_;
  std::map<std::string, std::unique_ptr<LoadedModel>> fp_;
  std::map<std::string, std::unique_ptr<model::Weights>> quantized_;  // by quant_key
  std::map<std::string, std::unique_ptr<intactkv::Prefix>> prefixes_;  // by intactkv_key
  std::map<std::string, engine::StaticScales> static_scales_;  // by quant_key and intactkv_key
  std::map<std::string, std::vector<int32_t>> streams_;
  std::map<std::string, std::vector<eval::TaskDoc>> docs_;  // loaded task documents, by task settings
};

}  // namespace ikv::exp
