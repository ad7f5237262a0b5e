#include "intactkv/calibrate_targets.h"

#include <cmath>
#include <filesystem>

#include "io/progress.h"
#include "io/dtype.h"
#include "io/error.h"

namespace ikv::intactkv {

TargetStore::TargetStore(int64_t n_layers, int64_t dim, int64_t total_rows, int64_t budget_bytes,
                         std::string spill_path)
    : layers_(n_layers), dim_(dim) {
  const int64_t bytes = total_rows * n_layers * dim * 2;
  if (bytes <= budget_bytes) {
    mem_.reserve(static_cast<size_t>(bytes / 2));
    return;
  }
  spill_path_ = std::move(spill_path);
  file_ = std::fopen(spill_path_.c_str(), "wb");
  if (!file_) fail(spill_path_, ": cannot create the calibration targets file (", bytes >> 20, " MB)");
}

TargetStore::~TargetStore() {
  if (file_) std::fclose(file_);
  map_.reset();
  std::error_code ec;
  if (!spill_path_.empty()) std::filesystem::remove(spill_path_, ec);
}

void TargetStore::append(const std::vector<std::vector<float>>& layer_outputs, const std::vector<int64_t>& rows) {
  std::vector<uint16_t> half(rows.size() * layers_ * dim_);
  size_t at = 0;
  for (int64_t l = 0; l < layers_; ++l)
    for (int64_t r : rows)
      for (int64_t i = 0; i < dim_; ++i) {
        const float v = layer_outputs[l][r * dim_ + i];
        if (!(std::fabs(v) <= 65504.f))
          fail("FP target of layer ", l, " is ", v, ", outside the fp16 range the targets are stored in");
        half[at++] = io::fp32_to_fp16(v);
      }
  if (file_) {
    if (std::fwrite(half.data(), 2, half.size(), file_) != half.size())
      fail(spill_path_, ": write failed (disk full?)");
  } else {
    mem_.insert(mem_.end(), half.begin(), half.end());
  }
  offset_.push_back(offset_.back() + static_cast<int64_t>(half.size()));
}

void TargetStore::finish() {
  if (!file_) return;
  const bool ok = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok) fail(spill_path_, ": write failed (disk full?)");
  if (offset_.back() > 0) map_ = std::make_unique<io::MappedFile>(spill_path_);
}

void TargetStore::get(size_t i, const std::vector<int64_t>& rows, SampleTargets& out) const {
  const int64_t m = static_cast<int64_t>(rows.size());
  if (i + 1 >= offset_.size() || offset_[i + 1] - offset_[i] != m * layers_ * dim_)
    fail("calibration targets: sample ", i, " is not stored with ", m, " rows");
  const uint16_t* src = map_ ? reinterpret_cast<const uint16_t*>(map_->data()) + offset_[i] : mem_.data() + offset_[i];
  out.rows = rows;
  out.layers.resize(layers_);
  for (int64_t l = 0; l < layers_; ++l) {
    out.layers[l].resize(m * dim_);
    for (int64_t j = 0; j < m * dim_; ++j) out.layers[l][j] = io::fp16_to_fp32(src[l * m * dim_ + j]);
  }
}

std::unique_ptr<TargetStore> compute_targets(const engine::Engine& fp, const Prefix& fp_prefix,
                                             const CalibrationData& data, int64_t budget_bytes,
                                             const std::string& spill_path, bool progress) {
  const model::Config& c = fp.config();
  std::vector<const CalibrationSample*> all;
  int64_t rows = 0;
  for (const auto* set : {&data.train, &data.heldout})
    for (const CalibrationSample& s : *set) all.push_back(&s), rows += static_cast<int64_t>(s.loss_rows.size());
  auto store = std::make_unique<TargetStore>(c.n_layers, c.dim, rows, budget_bytes, spill_path);
  const int64_t P = fp_prefix.size();
  std::vector<std::vector<float>> outs;
  io::Progress bar("FP targets", progress ? static_cast<int64_t>(all.size()) : 0);
  for (size_t i = 0; i < all.size(); ++i) {
    const CalibrationSample& s = *all[i];
    const int64_t n = static_cast<int64_t>(s.tokens.size()) - P;
    engine::KVCache cache = engine::make_kv_cache(c, P + n);
    install_prefix(cache, fp_prefix, fp);
    fp.forward(cache, s.tokens.data() + P, n, nullptr, n, {&outs});
    store->append(outs, s.loss_rows);
    bar.update(static_cast<int64_t>(i + 1));
  }
  store->finish();
  return store;
}

}  // namespace ikv::intactkv
