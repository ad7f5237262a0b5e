// The FP targets of IntactKV calibration: for every sample, the full-precision model's decoder-layer
// outputs at its loss tokens, computed once. Stored as fp16 (2 B a value; its 2^-11 relative
// rounding is far below the quantization error the loss measures): for LLaMA-7B, 128 samples ×
// 1024 tokens × 32 layers × 4096 = 17 G values, 32 GB even in fp16, so beyond a memory budget they
// go to a file and are read back through a memory map, one sample at a time.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "intactkv/backward.h"
#include "intactkv/calibrate_data.h"
#include "intactkv/prefix.h"
#include "io/mapped_file.h"

namespace ikv::intactkv {

class TargetStore {
 public:
  // total_rows: the loss rows of all samples to come; beyond budget_bytes they go to spill_path.
  TargetStore(int64_t n_layers, int64_t dim, int64_t total_rows, int64_t budget_bytes, std::string spill_path);
  ~TargetStore();  // removes the spill file
  TargetStore(const TargetStore&) = delete;
  TargetStore& operator=(const TargetStore&) = delete;

  bool on_disk() const { return !spill_path_.empty(); }
  // Appends the next sample: layer_outputs [n_layers][n * dim], rows its loss tokens.
  void append(const std::vector<std::vector<float>>& layer_outputs, const std::vector<int64_t>& rows);
  void finish();  // after the last append (maps the file)
  // Sample i's targets as fp32 (rows are the sample's loss rows, as appended).
  void get(size_t i, const std::vector<int64_t>& rows, SampleTargets& out) const;

 private:
  int64_t layers_, dim_;
  std::string spill_path_;
  std::vector<int64_t> offset_{0};  // per sample, in values
  std::vector<uint16_t> mem_;
  std::FILE* file_ = nullptr;
  std::unique_ptr<io::MappedFile> map_;
};

// Runs the FP model over every sample (the FP prefix installed, the prefix tokens not rerun) and
// stores the targets of train then held-out samples, in that order.
std::unique_ptr<TargetStore> compute_targets(const engine::Engine& fp, const Prefix& fp_prefix,
                                             const CalibrationData& data, int64_t budget_bytes,
                                             const std::string& spill_path, bool progress);

}  // namespace ikv::intactkv
