#include "bench_quantize.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/forward.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "io/error.h"
#include "quant/gptq.h"

using namespace ikv;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Uniform values of standard deviation sd from a per-index hash: 200M weights in well under a second.
void fill_random(std::vector<float>& v, size_t n, uint64_t seed, float sd) {
  v.resize(n);
  const float half_width = sd * 1.7320508f;  // uniform on [-a, a] has sd a / √3
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[i] = half_width * (static_cast<float>(z >> 40) / 8388608.0f - 1.0f);
  }
}

// One LLaMA-7B decoder layer with random weights (sd 0.02, LLaMA's init scale) and unit norms.
model::Weights llama7b_layer() {
  model::Weights w;
  model::Config& c = w.config;
  c.dim = 4096, c.hidden = 11008, c.n_layers = 1, c.n_heads = 32, c.n_kv_heads = 32, c.head_dim = 128;
  c.vocab = 32, c.max_pos = 2048;
  w.layers.resize(1);
  model::LayerWeights& L = w.layers[0];
  L.attn_norm.assign(c.dim, 1.0f);
  L.ffn_norm.assign(c.dim, 1.0f);
  uint64_t seed = 1;
  auto make = [&](kernels::Linear& l, int64_t out, int64_t in) {
    std::vector<float> weight;
    fill_random(weight, static_cast<size_t>(out * in), seed++, 0.02f);
    l = kernels::make_dense(std::move(weight), out, in);
  };
  make(L.q, 4096, 4096), make(L.k, 4096, 4096), make(L.v, 4096, 4096), make(L.o, 4096, 4096);
  make(L.gate, 11008, 4096), make(L.up, 11008, 4096), make(L.down, 4096, 11008);
  return w;
}

void emit(bool json, const nlohmann::json& j) {
  if (json) std::printf("%s\n", j.dump().c_str());
}

void bench_testbed(bool json, const std::string& data_root) {
  const int samples = 64, seq_len = 512;  // half the default sample count keeps the table near 3 min
  exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M");
  exp::QuantizerSpec calib_spec;
  calib_spec.method = "gptq", calib_spec.samples = samples, calib_spec.seq_len = seq_len;
  const quant::CalibrationTokens calib = exp::calibration_tokens(data_root, m, calib_spec, 0);
  int64_t tokens = 0;
  for (const auto& s : calib) tokens += static_cast<int64_t>(s.size());
  const int64_t layers = m.weights.config.n_layers;
  std::printf("Quantizing testbed-26M (%lld layers) at W3g128, %d threads; calibration: %zu ShareGPT samples of "
              "up to %d tokens (%lld tokens)\n",
              (long long)layers, omp_get_max_threads(), calib.size(), seq_len, (long long)tokens);
  std::printf("%-22s %10s %12s\n", "method", "seconds", "per layer");
  for (const char* method : {"rtn", "gptq", "awq"}) {
    exp::QuantizerSpec q = calib_spec;
    q.method = method, q.wbits = 3, q.group = 128;
    model::Weights w = m.weights;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      exp::quantize_weights(w, q, calib);
    } catch (const ikv::Error& e) {
      std::printf("%-22s %10s %12s   (%s)\n", method, "n/a", "n/a", e.what());
      emit(json, {{"bench", "quantize"}, {"model", "testbed-26M"}, {"method", method}, {"error", e.what()}});
      continue;
    }
    const double secs = seconds_since(t0);
    std::printf("%-22s %10.2f %12.2f\n", method, secs, secs / layers);
    emit(json, {{"bench", "quantize"}, {"model", "testbed-26M"}, {"method", method}, {"seconds", secs},
                {"per_layer", secs / layers}, {"calib_samples", calib.size()}, {"calib_tokens", tokens},
                {"threads", omp_get_max_threads()}});
  }
}

void bench_llama7b_layer(bool json) {
  // One 1024-token sequence: the extrapolation is linear in tokens, which under-counts attention's
  // quadratic share by about 2% of a forward at 2048 tokens (QKᵀ and PV are 4% of its flops there).
  const int64_t n = 1024, full_tokens = 128 * 2048, full_layers = 32;
  model::Weights w = llama7b_layer();
  const model::Config& c = w.config;
  std::vector<float> x;
  fill_random(x, static_cast<size_t>(n * c.dim), 99, 1.0f);
  const engine::Engine eng(w);
  quant::GptqOptions opt;
  opt.spec = {3, 128, false};
  std::printf("\nGPTQ W3g128 on one LLaMA-7B-shaped layer (random weights), 1 sequence of %lld tokens, %d threads\n",
              (long long)n, omp_get_max_threads());
  std::printf("%-44s %10s\n", "phase", "seconds");
  auto row = [&](const std::string& name, double secs) {
    std::printf("%-44s %10.2f\n", name.c_str(), secs);
    emit(json, {{"bench", "quantize"}, {"model", "llama-7b-layer"}, {"phase", name}, {"seconds", secs}, {"tokens", n}});
  };

  std::vector<float> y = x;
  engine::LinearInputs in;
  auto t0 = std::chrono::steady_clock::now();
  eng.layer_forward(0, y.data(), n, &in);
  const double t_capture = seconds_since(t0);
  row("capture forward (FP layer, inputs kept)", t_capture);

  // Batches of exactly n tokens, so the GEMMs run inside add() (per token), not in hessian().
  quant::HessianAccumulator attn(c.dim, n), o(c.q_dim(), n), ffn(c.dim, n), down(c.hidden, n);
  t0 = std::chrono::steady_clock::now();
  attn.add(in.attn_in.data(), n), o.add(in.o_in.data(), n), ffn.add(in.ffn_in.data(), n), down.add(in.down_in.data(), n);
  const double t_hessian = seconds_since(t0);
  row("Hessian accumulation (4 inputs)", t_hessian);
  in = {};
  t0 = std::chrono::steady_clock::now();
  std::vector<double> H_attn = attn.hessian(), H_o = o.hessian(), H_ffn = ffn.hessian(), H_down = down.hessian();
  const double t_finalize = seconds_since(t0);
  row("Hessian finalize (once per layer)", t_finalize);

  double t_factor_4096 = 0, t_factor_11008 = 0, t_solve_4096 = 0, t_solve_gate = 0, t_solve_down = 0;
  model::LayerWeights& L = w.layers[0];
  auto solve = [&](std::vector<double>& H, std::vector<kernels::Linear*> linears, double& t_factor, double& t_solve) {
    auto t = std::chrono::steady_clock::now();
    const quant::GptqHessian h = quant::gptq_prepare(H, linears[0]->in, opt, "bench");
    t_factor += seconds_since(t);
    H = {};
    for (kernels::Linear* l : linears) {
      t = std::chrono::steady_clock::now();
      quant::GptqMatrix m = quant::gptq_quantize(kernels::dense_f32_weight(*l).data(), l->out, l->in, h, opt, "bench");
      t_solve += seconds_since(t);
      kernels::set_packed(*l, std::make_shared<kernels::PackedMatrix>(std::move(m.packed)));
    }
  };
  solve(H_attn, {&L.q, &L.k, &L.v}, t_factor_4096, t_solve_4096);
  solve(H_o, {&L.o}, t_factor_4096, t_solve_4096);
  solve(H_ffn, {&L.gate, &L.up}, t_factor_4096, t_solve_gate);
  solve(H_down, {&L.down}, t_factor_11008, t_solve_down);
  row("H^-1 factor, 4096 wide (x3: attn, o, ffn)", t_factor_4096);
  row("H^-1 factor, 11008 wide (down)", t_factor_11008);
  row("solve 4096x4096 (x4: q, k, v, o)", t_solve_4096);
  row("solve 11008x4096 (x2: gate, up)", t_solve_gate);
  row("solve 4096x11008 (down)", t_solve_down);

  t0 = std::chrono::steady_clock::now();
  eng.layer_forward(0, x.data(), n);
  const double t_rerun = seconds_since(t0);
  row("re-run (quantized layer)", t_rerun);

  const double per_token = t_capture + t_hessian + t_rerun, scale = double(full_tokens) / n;
  const double fixed = t_finalize + t_factor_4096 + t_factor_11008 + t_solve_4096 + t_solve_gate + t_solve_down;
  const double layer = scale * per_token + fixed;
  std::printf("per matrix: solve 4096x4096 %.2f s, 11008x4096 %.2f s, 4096x11008 %.2f s; factor 4096 %.2f s, 11008 %.2f s\n",
              t_solve_4096 / 4, t_solve_gate / 2, t_solve_down, t_factor_4096 / 3, t_factor_11008);
  std::printf("LLaMA-7B, 128 x 2048 calibration tokens:\n"
              "  per layer = %.0f x (capture + Hessian + re-run = %.2f s) + (finalize + factors + solves = %.2f s)"
              " = %.0f s\n"
              "  model = %lld layers x %.0f s = %.1f min (+ the hidden states: %lld x %lld fp32 = %.1f GB in memory)\n",
              scale, per_token, fixed, layer, (long long)full_layers, layer, full_layers * layer / 60,
              (long long)full_tokens, (long long)c.dim, double(full_tokens) * c.dim * 4 / 1e9);
  emit(json, {{"bench", "quantize"}, {"model", "llama-7b"}, {"per_layer_seconds", layer},
              {"model_minutes", full_layers * layer / 60}, {"calib_tokens", full_tokens},
              {"measured_tokens", n}, {"threads", omp_get_max_threads()}});
}

}  // namespace

int bench_quantize(bool json, const std::string& data_root) {
  bench_testbed(json, data_root);
  bench_llama7b_layer(json);
  return 0;
}
