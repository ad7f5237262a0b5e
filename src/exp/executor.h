// The real cell executor behind `ikv-eval run`: turns a plan cell into numbers. Loaded models,
// quantized weights, IntactKV prefixes and tokenized datasets are cached across cells of a run;
// IntactKV prefixes are also saved as artifacts (results/artifacts/KEY.ikv.safetensors) and
// recorded in the store, so a later run reuses them.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "exp/model_setup.h"
#include "exp/plan.h"
#include "exp/store.h"
#include "intactkv/prefix.h"

namespace ikv::exp {

class Executor {
 public:
  Executor(std::string data_root, std::string results_dir, Store& store);
  ~Executor();
  CellRecord run(const Cell& cell);

  // Identities for plan keys: model files' and datasets' sha256 (cached by size and mtime).
  Identities identities() const;

 private:
  const LoadedModel& fp_model(const ModelSpec& m);
  const model::Weights& weights_for(const Cell& cell);
  const intactkv::Prefix* prefix_for(const Cell& cell);
  const std::vector<int32_t>& token_stream(const ModelSpec& m, const std::string& dataset);

  CellRecord run_task(const Cell& cell);
  CellRecord run_ppl(const Cell& cell);
  CellRecord run_qa(const Cell& cell, const std::string& task, int limit);
  CellRecord run_mse_sweep(const Cell& cell);
  CellRecord run_kld(const Cell& cell);

  std::string data_root_, results_dir_;
  Store& store_;
  std::map<std::string, std::unique_ptr<LoadedModel>> fp_;
  std::map<std::string, std::unique_ptr<model::Weights>> quantized_;  // by quant_key
  std::map<std::string, std::unique_ptr<intactkv::Prefix>> prefixes_;  // by intactkv_key
  std::map<std::string, std::vector<int32_t>> streams_;
  std::map<std::string, std::vector<double>> calibration_loss_;  // by intactkv_key, per optimizer step
};

}  // namespace ikv::exp
