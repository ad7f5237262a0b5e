#include "bench_calibrate.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/forward.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "intactkv/backward.h"
#include "intactkv/calibrate_data.h"
#include "intactkv/calibrate_targets.h"
#include "intactkv/prefix.h"
#include "intactkv/prefix_spec.h"

using namespace ikv;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int bench_calibrate(bool json, const std::string& data_root) {
  const int64_t measured = 8, epoch_samples = 128, max_len = 512;
  exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M");
  model::Weights q = m.weights;
  exp::quantize_weights(q, exp::rtn_spec(3));
  engine::Engine fp(m.weights);
  const intactkv::Prefix prefix =
      intactkv::build_prefix(fp, intactkv::prefix_tokens("vicuna", *m.tokenizer, m.weights.config.bos_id));
  const int64_t P = prefix.size();
  intactkv::CalibrationDataOptions opt;
  opt.samples = measured, opt.heldout = 0, opt.max_len = max_len;
  const intactkv::CalibrationData data =
      intactkv::load_calibration_data(intactkv::resolve_calibration_data(data_root, "sharegpt"), *m.tokenizer,
                                      prefix.tokens, m.weights.config.eos_id, opt);
  int64_t tokens = 0, loss_tokens = 0;
  for (const auto& s : data.train) tokens += s.tokens.size() - P, loss_tokens += s.loss_rows.size();

  auto t0 = std::chrono::steady_clock::now();
  auto targets = intactkv::compute_targets(fp, prefix, data, int64_t(1) << 40, "", false);
  const double t_targets = seconds_since(t0);

  const intactkv::DenseModel dense = intactkv::make_dense_model(q);
  intactkv::PrefixKV<float> p;
  p.key = prefix.key, p.value = prefix.value, p.len = P;
  intactkv::PrefixKV<float> grad = intactkv::zero_prefix_kv<float>(q.config, P);
  intactkv::SampleTargets tg;
  auto run = [&](const intactkv::CalibrationSample& s, bool backward) {
    intactkv::prefix_loss<float>(dense, p, s.tokens.data() + P, s.tokens.size() - P, tg, 16,
                                 backward ? &grad : nullptr);
  };
  targets->get(0, data.train[0].loss_rows, tg);
  run(data.train[0], true);  // warm-up: oneDNN JIT, page faults
  double t_fwd = 0, t_both = 0;
  for (size_t i = 0; i < data.train.size(); ++i) {
    targets->get(i, data.train[i].loss_rows, tg);
    t0 = std::chrono::steady_clock::now();
    run(data.train[i], false);
    t_fwd += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    run(data.train[i], true);
    t_both += seconds_since(t0);
  }
  const double t_bwd = t_both - t_fwd, scale = double(epoch_samples) / measured;
  // A training step runs forward + backward once per sample; the optimizer update is negligible.
  const double epoch = t_both * scale;

  std::printf("IntactKV calibration, testbed-26M RTN W3g128, vicuna prefix (%lld tokens), ShareGPT, %d threads\n"
              "%lld samples measured (%lld new tokens, %lld loss tokens, max-len %lld); epoch = x%.0f\n",
              (long long)P, omp_get_max_threads(), (long long)measured, (long long)tokens, (long long)loss_tokens,
              (long long)max_len, scale);
  std::printf("%-34s %10s %12s %12s\n", "phase", "seconds", "per sample", "tokens/s");
  auto row = [&](const char* name, double secs) {
    std::printf("%-34s %10.3f %12.4f %12.0f\n", name, secs, secs / measured, tokens / secs);
    if (json)
      std::printf("%s\n", nlohmann::json({{"bench", "calibrate"}, {"phase", name}, {"seconds", secs},
                                          {"samples", measured}, {"tokens", tokens}})
                              .dump()
                              .c_str());
  };
  row("FP targets (engine, once)", t_targets);
  row("loss forward", t_fwd);
  row("forward + backward", t_both);
  row("backward alone", t_bwd);
  std::printf("backward / forward: %.2fx\n", t_bwd / t_fwd);
  std::printf("epoch of %lld samples (extrapolated x%.0f): %.1f s; 20 epochs: %.1f min (+ targets %.1f s once)\n",
              (long long)epoch_samples, scale, epoch, 20 * epoch / 60, t_targets * scale);
  if (json)
    std::printf("%s\n", nlohmann::json({{"bench", "calibrate"}, {"backward_over_forward", t_bwd / t_fwd},
                                        {"epoch_seconds", epoch}, {"epoch_samples", epoch_samples},
                                        {"extrapolation", scale}, {"max_len", max_len},
                                        {"threads", omp_get_max_threads()}})
                            .dump()
                            .c_str());
  return 0;
}
