#include "intactkv/calibrate.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "io/progress.h"
#include "intactkv/backward.h"
#include "intactkv/calibrate_checkpoint.h"
#include "intactkv/calibrate_data.h"
#include "intactkv/calibrate_targets.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "quant/quarot.h"

namespace fs = std::filesystem;

namespace ikv::intactkv {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Everything that decides the result, as strings: Prefix::settings and the checkpoint's key.
std::map<std::string, std::string> settings_of(const CalibrationSpec& s, const CalibrationData& d) {
  auto num = [](double x) {
    std::ostringstream os;
    os << x;
    return os.str();
  };
  return {{"prefix", s.prefix},
          {"calibrated_for", s.quant_label},
          {"kv_bits", std::to_string(s.kv_bits)},
          {"data", fs::path(d.path).filename().string()},
          {"samples", std::to_string(s.samples)},
          {"heldout", std::to_string(s.heldout)},
          {"max_len", std::to_string(s.max_len)},
          {"min_loss_tokens", std::to_string(s.min_loss_tokens)},
          {"epochs", std::to_string(s.epochs)},
          {"grad_accum", std::to_string(s.grad_accum)},
          {"lr", num(s.lr)},
          {"warmup", num(s.warmup)},
          {"clip", num(s.clip)},
          {"weight_decay", num(s.weight_decay)},
          {"adam", num(s.beta1) + "/" + num(s.beta2) + "/" + num(s.eps)},
          {"seed", std::to_string(s.seed)}};
}

// FNV-1a over the dequantized weights: a checkpoint must come from the same quantized model.
std::string weights_hash(const DenseModel& m) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::vector<float>& v) {
    const auto* b = reinterpret_cast<const unsigned char*>(v.data());
    for (size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (int64_t l = 0; l < m.config().n_layers; ++l) {
    const std::shared_ptr<const DenseLayer> d = m.layer(l);
    for (const auto* v : {&d->q, &d->k, &d->v, &d->o, &d->gate, &d->up, &d->down}) mix(*v);
  }
  std::ostringstream os;
  os << std::hex << h;
  return os.str();
}

PrefixKV<float> to_kv(const Prefix& p) {
  PrefixKV<float> kv;
  kv.key = p.key, kv.value = p.value, kv.len = p.size();
  return kv;
}

// QuaRot: a rotated model's residual stream and K/V live in its own coordinates (quant/quarot.h).
// The FP targets and the FP prefix are mapped into them (identity for other models), and the
// calibrated prefix is mapped back before it is saved, so every prefix file stays in the FP
// model's coordinates and install_prefix maps it like any other.
void prefix_to_model(const model::Weights& q, PrefixKV<float>& p, bool inverse) {
  const int64_t Hd = q.config.head_dim;
  for (auto* set : {&p.key, &p.value})
    for (auto& t : *set) quant::kv_to_model(q, t.data(), static_cast<int64_t>(t.size()) / Hd, inverse);
}
void targets_to_model(const model::Weights& q, SampleTargets& tg) {
  for (auto& t : tg.layers) quant::residual_to_model(q, t.data(), static_cast<int64_t>(tg.rows.size()));
}

// Mean loss over the held-out samples (their targets follow the training samples' in the store).
double heldout_loss(const DenseModel& m, const PrefixKV<float>& p, const CalibrationData& d, const TargetStore& ts,
                    int kv_bits) {
  if (d.heldout.empty()) return std::nan("");
  SampleTargets tg;
  double sum = 0;
  for (size_t i = 0; i < d.heldout.size(); ++i) {
    const CalibrationSample& s = d.heldout[i];
    ts.get(d.train.size() + i, s.loss_rows, tg);
    targets_to_model(*m.weights, tg);
    sum += prefix_loss<float>(m, p, s.tokens.data() + p.len, s.tokens.size() - p.len, tg, kv_bits, nullptr).total;
  }
  return sum / d.heldout.size();
}

// One AdamW step on every prefix tensor, as torch.optim.AdamW: decoupled weight decay, bias-corrected
// moments, eps added to the corrected root.
void adamw_step(TrainState& st, const PrefixKV<float>& g, const CalibrationSpec& s, double lr) {
  const double t = static_cast<double>(st.step + 1);
  const float bc1 = static_cast<float>(1 - std::pow(s.beta1, t)), bc2_root = static_cast<float>(std::sqrt(1 - std::pow(s.beta2, t)));
  const float b1 = static_cast<float>(s.beta1), b2 = static_cast<float>(s.beta2), eps = static_cast<float>(s.eps);
  const float step = static_cast<float>(lr) / bc1, decay = static_cast<float>(1 - lr * s.weight_decay);
  for (size_t l = 0; l < g.key.size(); ++l)
    for (int kind = 0; kind < 2; ++kind) {
      std::vector<float>& p = kind ? st.p.value[l] : st.p.key[l];
      std::vector<float>& m = kind ? st.m.value[l] : st.m.key[l];
      std::vector<float>& v = kind ? st.v.value[l] : st.v.key[l];
      const std::vector<float>& gr = kind ? g.value[l] : g.key[l];
      for (size_t i = 0; i < p.size(); ++i) {
        p[i] *= decay;
        m[i] = b1 * m[i] + (1 - b1) * gr[i];
        v[i] = b2 * v[i] + (1 - b2) * gr[i] * gr[i];
        p[i] -= step * m[i] / (std::sqrt(v[i]) / bc2_root + eps);
      }
    }
}

// Mean training loss (total, last layer) over an epoch's samples, from its steps' means.
std::pair<double, double> epoch_mean(const std::vector<StepLog>& log, int64_t epoch, int64_t N, int64_t A) {
  double total = 0, last = 0;
  int64_t k = 0;
  for (const StepLog& s : log)
    if (s.epoch == epoch) {
      const int64_t count = std::min(A, N - k++ * A);
      total += s.loss * count, last += s.loss_last_layer * count;
    }
  return {total / N, last / N};
}

void write_loss_log(const std::vector<StepLog>& log, const std::string& stem, CalibrationResult& r) {
  std::string csv = "step,epoch,lr,loss,loss_last_layer,grad_norm\n";
  for (const StepLog& s : log) {
    std::ostringstream row;
    row.precision(9);
    row << s.step << "," << s.epoch << "," << s.lr << "," << s.loss << "," << s.loss_last_layer << "," << s.grad_norm
        << "\n";
    csv += row.str();
  }
  r.log_csv = stem + ".loss.csv";
  io::write_file_atomic(r.log_csv, csv);
}

}  // namespace

std::string calibration_stem(const std::string& output) {
  for (const char* ext : {".ikv.safetensors", ".safetensors"}) {
    const std::string e = ext;
    if (output.size() > e.size() && output.compare(output.size() - e.size(), e.size(), e) == 0)
      return output.substr(0, output.size() - e.size());
  }
  return output;
}

void validate_calibration_spec(const CalibrationSpec& s) {
  if (s.output.empty()) fail("calibration needs an output file (-o FILE.ikv.safetensors)");
  const fs::path dir = fs::absolute(s.output).parent_path();
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("-o ", s.output, ": folder ", dir.string(), " does not exist");
  if (!is_prefix_spec(s.prefix) && !fs::is_regular_file(s.prefix, ec))
    fail("--prefix '", s.prefix, "' is neither bos, vicuna, prompt:TEXT nor an existing .ikv.safetensors file");
  if (s.kv_bits != 16 && (s.kv_bits < 2 || s.kv_bits > 8)) fail("--kv-bits ", s.kv_bits, " must be 2..8 or 16");
  if (s.samples <= 0) fail("--samples ", s.samples, " must be positive");
  if (s.heldout < 0) fail("--heldout ", s.heldout, " must be >= 0");
  if (s.max_len < 2) fail("--max-len ", s.max_len, " must be at least 2");
  if (s.min_loss_tokens < 0) fail("min_loss_tokens ", s.min_loss_tokens, " must be >= 0");
  if (s.epochs <= 0) fail("--epochs ", s.epochs, " must be positive");
  if (s.grad_accum <= 0) fail("--grad-accum ", s.grad_accum, " must be positive");
  if (!(s.lr > 0) || !std::isfinite(s.lr)) fail("--lr ", s.lr, " must be positive");
  if (!(s.warmup >= 0 && s.warmup < 1)) fail("--warmup ", s.warmup, " must be in [0, 1)");
  if (!(s.clip >= 0) || !std::isfinite(s.clip)) fail("--clip ", s.clip, " must be >= 0 (0 = no clipping)");
  if (!(s.weight_decay >= 0)) fail("--weight-decay ", s.weight_decay, " must be >= 0");
  if (!(s.beta1 >= 0 && s.beta1 < 1 && s.beta2 >= 0 && s.beta2 < 1 && s.eps > 0))
    fail("AdamW betas must be in [0, 1) and eps positive");
  if (s.target_budget_bytes < 0) fail("target budget ", s.target_budget_bytes, " must be >= 0");
}

CalibrationResult calibrate_prefix(const model::Weights& fp, const model::Weights& quantized,
                                   const model::Tokenizer& tok, const std::string& data_root,
                                   const CalibrationSpec& spec, const CalibrationHooks& hooks) {
  validate_calibration_spec(spec);
  const auto t0 = Clock::now();
  const model::Config& c = fp.config;
  if (quantized.config.n_layers != c.n_layers || quantized.config.dim != c.dim ||
      quantized.config.kv_dim() != c.kv_dim() || quantized.config.hidden != c.hidden)
    fail("calibration: the quantized model's shape differs from the FP model's");
  const std::string data_path = resolve_calibration_data(data_root, spec.data);
  const std::string stem = calibration_stem(spec.output), ckpt_path = stem + ".ckpt.safetensors";

  // The starting prefix: built by the FP model (IntactKV), or an existing prefix file.
  engine::Engine fp_engine(fp);
  Prefix start = is_prefix_spec(spec.prefix)
                     ? build_prefix(fp_engine, prefix_tokens(spec.prefix, tok, c.bos_id))
                     : load_prefix(spec.prefix, c, fp.fingerprint);
  const int64_t P = start.size();

  CalibrationDataOptions dopt{spec.samples, spec.heldout, spec.max_len, spec.min_loss_tokens, spec.seed};
  const CalibrationData data = load_calibration_data(data_path, tok, start.tokens, c.eos_id, dopt);
  CalibrationResult r;
  const auto t_targets = Clock::now();
  std::unique_ptr<TargetStore> targets =
      compute_targets(fp_engine, start, data, spec.target_budget_bytes, stem + ".targets.f16", spec.progress);
  r.targets_seconds = since(t_targets);
  // The FP model's work is done: its layers read in place leave the resident set (at 7B, 13 GB).
  for (int64_t l = 0; l < c.n_layers; ++l) model::release_layer_pages(fp, l);

  const DenseModel dense = make_dense_model(quantized);
  const std::map<std::string, std::string> settings = settings_of(spec, data);
  const std::string key = nlohmann::json({{"settings", settings},
                                          {"model", fp.fingerprint},
                                          {"data_path", data.path},
                                          {"quantized_weights", weights_hash(dense)},
                                          {"prefix_tokens", start.tokens}})
                              .dump();

  TrainState st;
  st.p = to_kv(start);
  prefix_to_model(quantized, st.p, false);
  st.m = zero_prefix_kv<float>(c, P), st.v = st.m;
  st.rng.seed(spec.seed);
  if (load_checkpoint(ckpt_path, st, c, key)) r.resumed_from_epoch = st.epoch;

  PrefixKV<float> fp_kv = to_kv(start);
  prefix_to_model(quantized, fp_kv, false);
  r.heldout_mse_before = heldout_loss(dense, fp_kv, data, *targets, spec.kv_bits);

  const int64_t N = static_cast<int64_t>(data.train.size()), A = spec.grad_accum;
  const int64_t steps_per_epoch = (N + A - 1) / A, total_steps = spec.epochs * steps_per_epoch;
  // HF's linear warm-up: lr(s) = lr · s / W for the 0-based step s < W = ceil(warmup · steps), so the
  // first step has lr 0 (it still fills the Adam moments), as the reference's Trainer does.
  const int64_t warmup_steps = static_cast<int64_t>(std::ceil(spec.warmup * total_steps));
  io::Progress bar("calibrate", spec.progress ? (spec.epochs - st.epoch) * N : 0);
  int64_t done = 0;
  PrefixKV<float> grad = zero_prefix_kv<float>(c, P);
  SampleTargets tg;
  for (; st.epoch < spec.epochs;) {
    const auto te = Clock::now();
    std::vector<int64_t> order(N);
    for (int64_t i = 0; i < N; ++i) order[i] = i;
    for (int64_t i = N; i > 1; --i) std::swap(order[i - 1], order[st.rng() % i]);
    for (int64_t b = 0; b < N; b += A) {
      const int64_t count = std::min(A, N - b);
      for (int64_t l = 0; l < c.n_layers; ++l)
        std::fill(grad.key[l].begin(), grad.key[l].end(), 0.f), std::fill(grad.value[l].begin(), grad.value[l].end(), 0.f);
      double loss = 0, last = 0;
      for (int64_t j = b; j < b + count; ++j) {
        const CalibrationSample& s = data.train[order[j]];
        targets->get(order[j], s.loss_rows, tg);
        targets_to_model(quantized, tg);
        SampleLoss sl = prefix_loss<float>(dense, st.p, s.tokens.data() + P, s.tokens.size() - P, tg, spec.kv_bits, &grad);
        loss += sl.total, last += sl.per_layer.back();
        bar.update(++done);
      }
      // The step's gradient is the mean over its samples (HF divides each loss by the accumulation count).
      double norm2 = 0;
      for (auto* set : {&grad.key, &grad.value})
        for (auto& t : *set)
          for (float& x : t) x /= static_cast<float>(count), norm2 += double(x) * x;
      const double norm = std::sqrt(norm2);
      if (spec.clip > 0 && norm > spec.clip) {  // torch.nn.utils.clip_grad_norm_
        const float coef = static_cast<float>(spec.clip / (norm + 1e-6));
        for (auto* set : {&grad.key, &grad.value})
          for (auto& t : *set)
            for (float& x : t) x *= coef;
      }
      const double lr = st.step < warmup_steps ? spec.lr * st.step / warmup_steps : spec.lr;
      adamw_step(st, grad, spec, lr);
      ++st.step;
      StepLog sl{st.step, st.epoch, lr, loss / count, last / count, norm};
      st.log.push_back(sl);
      if (hooks.on_step) hooks.on_step(sl);
    }
    ++st.epoch;
    save_checkpoint(ckpt_path, st, c, key);
    write_loss_log(st.log, stem, r);
    const auto [loss, last] = epoch_mean(st.log, st.epoch - 1, N, A);
    const EpochLog el{st.epoch, spec.epochs, st.step, loss, last,
                      heldout_loss(dense, st.p, data, *targets, spec.kv_bits), since(te)};
    if (hooks.on_epoch && !hooks.on_epoch(el) && st.epoch < spec.epochs) {
      bar.finish();
      r.steps = st.step, r.log = st.log, r.seconds = since(t0);
      return r;  // stopped as if interrupted: the checkpoint stays for the next run
    }
  }
  bar.finish();

  r.completed = true;
  r.steps = st.step;
  r.log = st.log;
  r.first_loss = st.log.front().loss;
  r.final_loss = epoch_mean(st.log, spec.epochs - 1, N, A).first;
  r.heldout_mse_after = heldout_loss(dense, st.p, data, *targets, spec.kv_bits);
  r.prefix = start;
  PrefixKV<float> calibrated = st.p;
  prefix_to_model(quantized, calibrated, true);
  r.prefix.key = calibrated.key, r.prefix.value = calibrated.value;
  r.prefix.origin = "calibrated";
  r.prefix.model_fingerprint = fp.fingerprint;
  r.prefix.settings = settings;
  auto num = [](double x) {
    std::ostringstream os;
    os.precision(9);
    os << x;
    return os.str();
  };
  r.prefix.settings["steps"] = std::to_string(r.steps);
  r.prefix.settings["final_loss"] = num(r.final_loss);
  r.prefix.settings["heldout_mse_before"] = num(r.heldout_mse_before);
  r.prefix.settings["heldout_mse_after"] = num(r.heldout_mse_after);
  save_prefix(r.prefix, c, spec.output);
  write_loss_log(st.log, stem, r);
  std::error_code ec;
  fs::remove(ckpt_path, ec);
  r.output = spec.output;
  r.seconds = since(t0);
  return r;
}

}  // namespace ikv::intactkv
