#include "exp/estimate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <random>

#include "io/error.h"
#include "io/mapped_file.h"
#include "io/memory.h"
#include "kernels/linear.h"
#include "model/weights.h"
#include "quant/rtn.h"

namespace ikv::exp {
namespace fs = std::filesystem;

double flops_per_token(const model::Config& c, int64_t ctx) {
  const double linear = c.n_layers * (double(c.dim) * (c.q_dim() + 2 * c.kv_dim()) + double(c.q_dim()) * c.dim +
                                      3.0 * c.dim * c.hidden) +
                        double(c.vocab) * c.dim;
  const double attention = c.n_layers * 4.0 * c.n_heads * c.head_dim * (ctx / 2.0);
  return 2 * linear + attention;
}

namespace {

// GFLOP/s of linear_forward on l with 128 input rows, best of repeats over ~0.15 s.
double gflops_of(const kernels::Linear& l) {
  const int64_t M = 128;
  std::vector<float> x(M * l.in, 0.01f), y(M * l.out);
  kernels::linear_forward(l, x.data(), M, y.data());  // warm-up (and the one-time conversions)
  double best = 0, spent = 0;
  while (spent < 0.15) {
    const auto t0 = std::chrono::steady_clock::now();
    kernels::linear_forward(l, x.data(), M, y.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += s;
    best = std::max(best, 2.0 * M * l.in * l.out / s / 1e9);
  }
  return best;
}

double layer_weights(const model::Config& c) {
  return double(c.dim) * (c.q_dim() + 2 * c.kv_dim()) + double(c.q_dim()) * c.dim + 3.0 * c.dim * c.hidden;
}

// The rows one forward of the cell runs at once (activations, KV cache and logits scale with it).
int64_t forward_rows(const Cell& cell, const model::Config& c) {
  const int64_t rows = std::visit(
      [](const auto& t) -> int64_t {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, PplUnit> || std::is_same_v<T, KldTask>) return t.ctx;
        else if constexpr (std::is_same_v<T, MmluTask>) return t.max_ctx > 0 ? t.max_ctx : 2048;
        else if constexpr (std::is_same_v<T, QuantErrorTask>) return t.ctx;
        else return 512;  // QA requests and the sweep's samples: a few hundred tokens
      },
      cell.task);
  return std::min<int64_t>(rows, c.max_pos);
}

// Bytes per weight of packed codes with fp16 scales (and uint8 zero points when asymmetric).
double packed_bytes_per_weight(int bits, int64_t group, bool sym, int64_t in) {
  const double g = group > 0 ? double(group) : double(in);
  return bits / 8.0 + 2.0 / g + (sym ? 0.0 : 1.0 / g);
}

}  // namespace

MachineRates measure_rates(const model::Config& c) {
  const int64_t in = c.dim - c.dim % 128 > 0 ? c.dim - c.dim % 128 : c.dim;
  const int64_t out = std::min<int64_t>(std::max<int64_t>(c.hidden, 256), 4096);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(out * in);
  for (float& v : w) v = normal(rng);
  std::vector<uint16_t> bf16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &w[i], 4);
    bf16[i] = static_cast<uint16_t>(b >> 16);
  }
  MachineRates r;
  kernels::Linear half = kernels::make_dense_half(kernels::owned_half(kernels::Half::kBf16, bf16), out, in);
  r.dense_f32 = gflops_of(half);
  kernels::to_bf16(half);
  r.dense_bf16 = gflops_of(half);
  kernels::Linear packed = kernels::make_dense(w, out, in);
  const kernels::QuantSpec spec{4, in % 128 == 0 ? 128 : -1, false};
  kernels::set_packed(packed, std::make_shared<kernels::PackedMatrix>(quant::quantize_rtn(w.data(), out, in, spec, "probe")));
  r.packed_f32 = gflops_of(packed);
  kernels::use_q8_inputs(packed);
  r.packed_q8 = gflops_of(packed);
  r.available_bytes = io::available_memory_bytes();
  return r;
}

ModelShape model_shape(const std::string& model_dir) {
  ModelShape s;
  double bytes = 0;
  std::error_code ec;
  if (fs::is_directory(model_dir, ec)) {  // config.json alone: no weight file is read or hashed
    const std::string config = (fs::path(model_dir) / "config.json").string();
    s.config = model::parse_hf_config(io::read_text_file(config), config);
    for (const auto& e : fs::directory_iterator(model_dir))
      if (e.path().extension() == ".safetensors") bytes += double(fs::file_size(e.path()));
  } else {  // a llama2.c file: small, probed whole
    s.config = model::probe_model(model_dir).config;
    bytes = double(fs::file_size(model_dir));
  }
  const model::Config& c = s.config;
  const double weights = c.n_layers * layer_weights(c) + double(c.vocab) * c.dim * (c.tied_embeddings ? 1 : 2);
  s.bytes_per_weight = bytes / weights > 3 ? 4 : 2;
  return s;
}

CellEstimate estimate_cell(const Cell& cell, const ModelShape& shape, const MachineRates& rates) {
  const model::Config& c = shape.config;
  const QuantizerSpec& q = cell.quant;
  const std::string& dtype = cell.model.dtype;
  const double layer = layer_weights(c), table = double(c.vocab) * c.dim;
  const double stored = shape.bytes_per_weight;
  const bool packed = !q.is_fp();
  const bool rotated = q.method == "quarot";
  // Weights as computed: 16-bit ones read in place (dtype bf16 keeps 2 bytes; fp32 storage is fp32).
  const double dense_bytes = dtype == "bf16" ? 2 : stored;
  const double layer_bytes =
      packed ? layer * packed_bytes_per_weight(q.wbits, q.group, q.sym || rotated, c.dim) : layer * dense_bytes;
  double head_bytes = rotated ? table * 4 : table * dense_bytes;
  if (q.head_bits < 16) head_bytes = table * packed_bytes_per_weight(q.head_bits, 128, false, c.dim);
  const double embed_bytes = stored == 4 ? table * 4 : 0;  // 16-bit tables: the rows used, read in place
  const double weights = c.n_layers * layer_bytes + head_bytes + embed_bytes;

  // Quantizing: the model so far, one layer upcast to fp32, the source layer's pages, and GPTQ/AWQ's
  // calibration streams and Hessians.
  double quantizing = 0;
  if (packed) {
    quantizing = weights + layer * (4 + stored);
    if (q.needs_calibration()) {
      const double tokens = double(q.samples) * std::min<int64_t>(q.seq_len, c.max_pos);
      quantizing += tokens * c.dim * 4;
      quantizing += 8.0 * (2.0 * c.dim * c.dim + double(c.q_dim()) * c.q_dim() + double(c.hidden) * c.hidden);
      quantizing += std::min<int64_t>(q.seq_len, c.max_pos) * 4.0 * (3.0 * c.dim + c.q_dim() + 3.0 * c.hidden);
    }
  }
  // Evaluating: weights + KV cache + a forward's activations and logits (+ the FP teacher and the
  // per-layer tape when the prefix is calibrated).
  const int64_t rows = forward_rows(cell, c);
  const double kv = 2.0 * c.n_layers * c.kv_dim() * (rows + 64) * 4;
  const double acts = rows * 4.0 * (4.0 * c.dim + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + 2.0 * c.hidden + c.vocab) +
                      4.0 * c.n_heads * rows * rows;
  double evaluating = weights + kv + acts;
  // Perplexity goes layer-major by itself when the mapped layers do not fit (layer_major_needed).
  const bool mapped = !packed && stored == 2;
  if (mapped && std::holds_alternative<PplUnit>(cell.task) &&
      layer_major_needed(c.n_layers * layer_bytes, double(rates.available_bytes)))
    evaluating = layer_bytes + head_bytes + kv + acts + std::min(2.0 * (1 << 30), estimate_tokens(cell) * c.dim * 4);
  // Calibrating the prefix: first the FP targets (the teacher's layers read in place, the packed
  // student, the targets kept in memory up to their 4 GB budget), then the training steps (the
  // student, its layers dequantized — all when they take at most 4 GB, else one — the residual
  // streams and K/V of every layer, and one layer's activations, recomputed in the backward).
  double calibrating_tokens = 0;
  if (cell.intactkv.kind == IntactKVSpec::Kind::Calibrated) {
    const CalibrationSpec& cal = cell.intactkv.calibration;
    const double n = double(std::min<int64_t>(cal.max_len, c.max_pos)), P = 64;
    const double fp32_layers = c.n_layers * layer * 4;
    const double targets = c.n_layers * layer * stored + table * stored + weights +
                           std::min(4.0 * (1 << 30), cal.samples * n / 2 * c.n_layers * c.dim * 2);
    const double training = weights + (fp32_layers <= 4.0 * (1 << 30) ? fp32_layers : layer * 4) +
                            (c.n_layers + 1) * n * c.dim * 4 + c.n_layers * 2.0 * c.kv_dim() * (n + P) * 4 +
                            2 * (n * 4 * (4.0 * c.dim + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + 3.0 * c.hidden) +
                                 4.0 * c.n_heads * n * (n + P));
    evaluating = std::max({evaluating, targets, training});
    calibrating_tokens = cal.samples * n * (1 + 3.0 * cal.epochs);  // teacher once; student fwd + bwd
  }
  CellEstimate e;
  e.peak_bytes = std::max(quantizing, evaluating) + 200e6;  // + the process itself (code, oneDNN, buffers)
  e.fits = rates.available_bytes <= 0 || e.peak_bytes <= rates.available_bytes;
  if (rates.dense_f32 <= 0) return e;

  // Time: forward tokens at the rate of the weights' form; the quantizers' calibration passes,
  // GPTQ's column solves and the prefix calibration at the dense rate.
  double rate = dtype == "bf16" ? rates.dense_bf16 : rates.dense_f32;
  if (packed) rate = dtype == "q8" || q.abits < 16 ? rates.packed_q8 : rates.packed_f32;
  const double per_token = flops_per_token(c, rows);
  e.seconds = estimate_tokens(cell) * per_token / (rate * 1e9);
  e.prefix_seconds = calibrating_tokens * per_token / (rates.dense_f32 * 1e9);
  if (packed) {
    double flops = 0;
    if (q.needs_calibration()) {
      const double tokens = double(q.samples) * std::min<int64_t>(q.seq_len, c.max_pos);
      const double passes = q.method == "awq" ? 20 : 2;  // AWQ's grid of scale ratios; GPTQ's Hessian and advance passes
      flops += tokens * passes * c.n_layers * layer * 2;
      if (q.method != "awq")  // lazy-batch GPTQ: about 2 out in^2 per linear
        flops += c.n_layers * 2.0 *
                 (double(c.dim) * c.dim * (c.q_dim() + 2 * c.kv_dim()) + double(c.q_dim()) * c.q_dim() * c.dim +
                  2.0 * c.dim * c.dim * c.hidden + double(c.hidden) * c.hidden * c.dim);
    }
    e.quant_seconds = flops / (rates.dense_f32 * 1e9) + c.n_layers * layer * 20e-9;  // + packing, ~20 ns per weight
  }
  return e;
}

bool layer_major_needed(double mapped_layer_bytes, double available_bytes) {
  return available_bytes > 0 && mapped_layer_bytes > kLayerMajorShare * available_bytes;
}

bool layer_major_needed(const model::Weights& w, std::string* why) {
  const double mapped = double(model::mapped_layer_bytes(w)), available = double(io::available_memory_bytes());
  if (!layer_major_needed(mapped, available)) return false;
  if (why) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s: the decoder layers read from the checkpoint (%.1f GB) would take over %.0f%% of the %.1f GB of "
                  "memory available: perplexity runs layer-major",
                  w.source.c_str(), mapped / 1e9, kLayerMajorShare * 100, available / 1e9);
    *why = buf;
  }
  return true;
}

EstimateFn plan_estimator(const std::string& data_root, bool measure) {
  struct Known {
    ModelShape shape;
    MachineRates rates;
  };
  auto known = std::make_shared<std::map<std::string, Known>>();
  return [=](const Cell& cell) {
    const std::string dir = model_dir(cell.model, data_root);
    auto it = known->find(dir);
    if (it == known->end()) {
      Known k;
      k.shape = model_shape(dir);
      if (measure) k.rates = measure_rates(k.shape.config);
      k.rates.available_bytes = io::available_memory_bytes();
      it = known->emplace(dir, k).first;
    }
    return estimate_cell(cell, it->second.shape, it->second.rates);
  };
}

void refuse_oversized_cells(const Plan& plan, const EstimateFn& estimate,
                            const std::function<bool(const std::string& key)>& is_done) {
  for (const Cell& cell : plan.cells) {
    const CellEstimate e = estimate(cell);
    if (!e.fits && !(is_done && is_done(cell.key)))
      fail(cell.model.where.empty() ? cell.model.path : cell.model.where, ": cell ", cell.index + 1, " (",
           cell.describe(), ") needs about ", std::lround(e.peak_bytes / 1e8) / 10.0, " GB; ",
           std::lround(io::available_memory_bytes() / 1e8) / 10.0,
           " GB are available (see `ikv-eval run --dry-run`)");
  }
}

}  // namespace ikv::exp
