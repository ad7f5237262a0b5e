// The calibration backward (intactkv/backward.h): its gradient against central finite differences,
// its float path against its double path, and its loss against an independent computation from
// engine::Engine's layer-output taps.
#include <omp.h>

#include <cmath>
#include <random>

#include "exp/variant.h"
#include "intactkv/backward.h"
#include "intactkv/prefix.h"
#include "intactkv/prefix_spec.h"
#include "model/tokenizer.h"
#include "quant/quarot.h"
#include "test_util.h"

using namespace ikv;
using intactkv::PrefixKV;

namespace {

// Toy-sized problems run on one thread: OpenMP's fork/join (inside oneDNN too) costs more than the
// work there, and when other processes hold the cores, spin-waiting threads make it ~100x slower.
struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

// A random LLaMA with every layer type (RMSNorm, GQA attention with RoPE, SwiGLU) at toy size.
// QuaRot W4 (per-channel) with `abits`-bit activations.
exp::QuantizerSpec quarot_w4(int abits, double clip_ratio) {
  exp::QuantizerSpec q;
  q.method = "quarot", q.wbits = 4, q.group = -1, q.abits = abits, q.clip_ratio = clip_ratio;
  return q;
}

model::Weights tiny_model(uint32_t seed) {
  model::Config c;
  c.dim = 16, c.hidden = 24, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 4, c.vocab = 32;
  c.max_pos = 64;
  return test::tiny_random_model(seed, c, 0.2f, 0.f);
}

// One calibration problem: the FP model's prefix and targets, the quantized model's dense view.
struct Problem {
  model::Weights fp, q;
  intactkv::Prefix prefix;
  std::vector<int32_t> tokens;  // the new tokens (after the prefix)
  intactkv::SampleTargets targets;
};

void make_problem(Problem& pb, const std::vector<int32_t>& prefix_tokens, const std::vector<int32_t>& tokens,
                  const exp::QuantizerSpec& quantizer) {
  pb.q = pb.fp;
  exp::quantize_weights(pb.q, quantizer);
  engine::Engine fp(pb.fp);
  pb.prefix = intactkv::build_prefix(fp, prefix_tokens);
  pb.tokens = tokens;
  const int64_t n = tokens.size(), D = pb.fp.config.dim;
  engine::KVCache cache = engine::make_kv_cache(pb.fp.config, pb.prefix.size() + n);
  intactkv::install_prefix(cache, pb.prefix, fp);
  std::vector<std::vector<float>> outs;
  fp.forward(cache, tokens.data(), n, nullptr, n, {&outs});
  // Loss on every other token, so that masking is exercised.
  pb.targets.rows.clear();
  for (int64_t t = 0; t < n; t += 2) pb.targets.rows.push_back(t);
  pb.targets.layers.assign(pb.fp.config.n_layers, {});
  for (size_t l = 0; l < outs.size(); ++l)
    for (int64_t r : pb.targets.rows)
      pb.targets.layers[l].insert(pb.targets.layers[l].end(), &outs[l][r * D], &outs[l][(r + 1) * D]);
  // A QuaRot model's residual stream is rotated: the targets go into its coordinates.
  for (auto& t : pb.targets.layers) quant::residual_to_model(pb.q, t.data(), static_cast<int64_t>(pb.targets.rows.size()));
}

void make_problem(Problem& pb, const std::vector<int32_t>& prefix_tokens, const std::vector<int32_t>& tokens,
                  int wbits) {
  make_problem(pb, prefix_tokens, tokens, exp::rtn_spec(wbits, -1));
}

// The problem's FP prefix in the quantized model's coordinates (mapped per head for QuaRot, as
// install_prefix and the calibration do).
template <typename T>
PrefixKV<T> as_kv(const Problem& pb) {
  const intactkv::Prefix& p = pb.prefix;
  const int64_t Hd = pb.q.config.head_dim;
  PrefixKV<T> kv;
  kv.len = p.size();
  for (size_t l = 0; l < p.key.size(); ++l) {
    std::vector<float> k = p.key[l], v = p.value[l];
    quant::kv_to_model(pb.q, k.data(), static_cast<int64_t>(k.size()) / Hd);
    quant::kv_to_model(pb.q, v.data(), static_cast<int64_t>(v.size()) / Hd);
    kv.key.emplace_back(k.begin(), k.end());
    kv.value.emplace_back(v.begin(), v.end());
  }
  return kv;
}

// The loss computed without the calibration code: Engine::forward's layer outputs.
double engine_loss(const Problem& pb, int kv_bits) {
  engine::Engine eng(pb.q);
  const int64_t n = pb.tokens.size(), D = pb.q.config.dim;
  engine::KVCache cache = engine::make_kv_cache(pb.q.config, pb.prefix.size() + n, kv_bits);
  intactkv::install_prefix(cache, pb.prefix, eng);
  std::vector<std::vector<float>> outs;
  eng.forward(cache, pb.tokens.data(), n, nullptr, n, {&outs});
  const int64_t rows = pb.targets.rows.size();
  double total = 0;
  for (size_t l = 0; l < outs.size(); ++l) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < D; ++i) {
        const double d = double(outs[l][pb.targets.rows[r] * D + i]) - pb.targets.layers[l][r * D + i];
        s += d * d;
      }
    total += s / (2.0 * rows * D);
  }
  return total;
}

// Central differences in double against the double VJP at random coordinates of the prefix K and
// V of the given layers. With KV quantization the finite differences replay the quantization
// error recorded at the base point: that is the function whose exact gradient the straight-through
// estimator is (the quantizer itself is piecewise constant, its true derivative 0 almost everywhere).
// Step 1e-5·max(1,|x|) in double: truncation error ~h²·L''' ≈ 1e-10 and rounding ~1e-16·L/h ≈ 1e-11,
// both far below 1e-3 of the gradients checked (≥ ~1e-6 here), so the tolerance 1e-3 has margin
// yet a wrong term in the VJP (a missing path is a relative error of order 1) cannot pass it.
double max_fd_error(const Problem& pb, int kv_bits, const std::vector<int64_t>& layers, int coords, uint32_t seed) {
  const intactkv::DenseModel m = intactkv::make_dense_model(pb.q);
  const PrefixKV<double> p = as_kv<double>(pb);
  const int64_t n = pb.tokens.size();
  intactkv::KvQuantError<double> err;
  PrefixKV<double> g = intactkv::zero_prefix_kv<double>(pb.q.config, p.len);
  intactkv::prefix_loss(m, p, pb.tokens.data(), n, pb.targets, kv_bits, &g, &err);
  err.replay = true;
  std::mt19937 rng(seed);
  double worst = 0;
  for (int64_t l : layers)
    for (int kind = 0; kind < 2; ++kind)
      for (int c = 0; c < coords; ++c) {
        const std::vector<double>& gv = kind == 0 ? g.key[l] : g.value[l];
        const size_t i = rng() % gv.size();
        auto loss_at = [&](double delta) {
          PrefixKV<double> pp = p;
          (kind == 0 ? pp.key[l] : pp.value[l])[i] += delta;
          return intactkv::prefix_loss(m, pp, pb.tokens.data(), n, pb.targets, kv_bits, nullptr, &err).total;
        };
        const double x = (kind == 0 ? p.key[l] : p.value[l])[i];
        const double h = 1e-5 * std::max(1.0, std::fabs(x));
        const double fd = (loss_at(h) - loss_at(-h)) / (2 * h);
        const double rel = std::fabs(fd - gv[i]) / (std::max(std::fabs(fd), std::fabs(gv[i])) + 1e-12);
        INFO("layer " << l << (kind == 0 ? " key[" : " value[") << i << "] fd " << fd << " vjp " << gv[i]);
        CHECK(std::fabs(gv[i]) > 1e-9);  // a coordinate the loss actually depends on
        CHECK(rel < 1e-3);
        worst = std::max(worst, rel);
      }
  return worst;
}

// ‖g_float − g_double‖ / ‖g_double‖ over all prefix tensors.
double float_vs_double(const Problem& pb, int kv_bits) {
  const intactkv::DenseModel m = intactkv::make_dense_model(pb.q);
  PrefixKV<float> gf = intactkv::zero_prefix_kv<float>(pb.q.config, pb.prefix.size());
  PrefixKV<double> gd = intactkv::zero_prefix_kv<double>(pb.q.config, pb.prefix.size());
  const int64_t n = pb.tokens.size();
  intactkv::prefix_loss(m, as_kv<float>(pb), pb.tokens.data(), n, pb.targets, kv_bits, &gf);
  intactkv::prefix_loss(m, as_kv<double>(pb), pb.tokens.data(), n, pb.targets, kv_bits, &gd);
  double num = 0, den = 0;
  for (size_t l = 0; l < gd.key.size(); ++l)
    for (size_t i = 0; i < gd.key[l].size(); ++i) {
      num += std::pow(gf.key[l][i] - gd.key[l][i], 2) + std::pow(gf.value[l][i] - gd.value[l][i], 2);
      den += std::pow(gd.key[l][i], 2) + std::pow(gd.value[l][i], 2);
    }
  return std::sqrt(num / den);
}

// The backward that keeps every layer's activations and the one that recomputes them per layer
// (the plan for 7B) do the same arithmetic: bitwise equal gradients.
void check_recompute_equal(const Problem& pb, int kv_bits) {
  const intactkv::DenseModel m = intactkv::make_dense_model(pb.q);
  const int64_t n = pb.tokens.size();
  PrefixKV<float> keep = intactkv::zero_prefix_kv<float>(pb.q.config, pb.prefix.size()), recompute = keep;
  const PrefixKV<float> p = as_kv<float>(pb);
  const double a = intactkv::prefix_loss(m, p, pb.tokens.data(), n, pb.targets, kv_bits, &keep).total;
  const double b = intactkv::prefix_loss(m, p, pb.tokens.data(), n, pb.targets, kv_bits, &recompute, nullptr, 0).total;
  CHECK(a == b);
  CHECK(keep.key == recompute.key);
  CHECK(keep.value == recompute.value);
}

void check_losses(const Problem& pb, int kv_bits, double tol) {
  const intactkv::DenseModel m = intactkv::make_dense_model(pb.q);
  const int64_t n = pb.tokens.size();
  const double ref = engine_loss(pb, kv_bits);
  const double lf = intactkv::prefix_loss(m, as_kv<float>(pb), pb.tokens.data(), n, pb.targets, kv_bits,
                                          nullptr).total;
  const double ld = intactkv::prefix_loss(m, as_kv<double>(pb), pb.tokens.data(), n, pb.targets, kv_bits,
                                          nullptr).total;
  MESSAGE("kv" << kv_bits << " loss: engine " << ref << ", float " << lf << ", double " << ld);
  CHECK(ref > 0);
  CHECK(std::fabs(lf - ref) <= tol * ref);
  CHECK(std::fabs(ld - ref) <= tol * ref);
}

}  // namespace

TEST_CASE("calibration VJP matches finite differences on a random tiny model") {
  const OneThread one_thread;
  Problem pb;
  pb.fp = tiny_model(7);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 12; ++i) tokens.push_back(3 + (i * 7) % 29);
  make_problem(pb, {1, 5, 9}, tokens, /*wbits=*/3);
  for (int kv_bits : {16, 4}) {
    CAPTURE(kv_bits);
    const double err = max_fd_error(pb, kv_bits, {0, 1}, 4, 11);
    MESSAGE("tiny model, kv" << kv_bits << ": max relative error VJP vs finite differences " << err);
  }
  // The fp32 training path against the double path (fp32 rounding only, ~1e-6).
  const double fd = float_vs_double(pb, 16);
  MESSAGE("tiny model: float vs double gradient, relative " << fd);
  CHECK(fd < 1e-4);
  // Engine-independent loss: fp32 GEMM blocking differs, nothing else.
  check_losses(pb, 16, 1e-5);
  check_losses(pb, 4, 1e-3);
  check_recompute_equal(pb, 4);
}

TEST_CASE("calibration VJP matches finite differences on stories260K") {
  const OneThread one_thread;
  if (test::data_root().empty()) return;
  Problem pb;
  pb.fp = model::load_model(test::model_dir("stories260K"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("stories260K"));
  const model::Tokenizer& tok = *tokenizer;
  const std::vector<int32_t> pre = intactkv::prefix_tokens("prompt:Once upon a time,", tok, pb.fp.config.bos_id);
  make_problem(pb, pre, tok.encode(" there was a little girl named Lily. She loved to play outside in the park."), 3);
  const int64_t L = pb.fp.config.n_layers;
  for (int kv_bits : {16, 4}) {
    CAPTURE(kv_bits);
    const double err = max_fd_error(pb, kv_bits, {0, L / 2, L - 1}, 3, 5);
    MESSAGE("stories260K, kv" << kv_bits << ": max relative error VJP vs finite differences " << err);
  }
  const double fd = float_vs_double(pb, 16);
  MESSAGE("stories260K: float vs double gradient, relative " << fd);
  CHECK(fd < 1e-4);
  check_losses(pb, 16, 1e-4);
  check_losses(pb, 4, 1e-2);
  check_recompute_equal(pb, 16);
}

TEST_CASE("the last layer's prefix gradient needs no KV-quantization surrogate") {
  const OneThread one_thread;
  // The last layer's prefix feeds only its own loss, which no quantizer lies between: plain finite
  // differences of the real (quantizing) forward match the VJP there.
  Problem pb;
  pb.fp = tiny_model(3);
  make_problem(pb, {1, 4}, {6, 7, 8, 9, 10, 11, 12, 13}, 3);
  const intactkv::DenseModel m = intactkv::make_dense_model(pb.q);
  const PrefixKV<double> p = as_kv<double>(pb);
  PrefixKV<double> g = intactkv::zero_prefix_kv<double>(pb.q.config, p.len);
  const int64_t n = pb.tokens.size(), last = pb.q.config.n_layers - 1;
  intactkv::prefix_loss(m, p, pb.tokens.data(), n, pb.targets, 3, &g);
  for (size_t i = 0; i < g.value[last].size(); i += 5) {
    PrefixKV<double> a = p, b = p;
    a.value[last][i] += 1e-5, b.value[last][i] -= 1e-5;
    const double fd = (intactkv::prefix_loss(m, a, pb.tokens.data(), n, pb.targets, 3, nullptr).total -
                       intactkv::prefix_loss(m, b, pb.tokens.data(), n, pb.targets, 3, nullptr).total) /
                      2e-5;
    CHECK(std::fabs(fd - g.value[last][i]) <= 1e-6 * (std::fabs(fd) + 1e-6));
  }
}

TEST_CASE("calibration VJP through QuaRot's online rotations; activation quantization straight-through") {
  const OneThread one_thread;
  std::vector<int32_t> tokens;
  for (int i = 0; i < 12; ++i) tokens.push_back(3 + (i * 7) % 29);
  // W4 on the rotated model, FP activations: the exact gradient (per-head rotation of q/k after
  // RoPE, the FFN rotation before down_proj, prefix and targets mapped into rotated coordinates).
  Problem pb;
  pb.fp = tiny_model(7);
  make_problem(pb, {1, 5, 9}, tokens, quarot_w4(16, 1.0));
  REQUIRE(pb.q.rotation);
  CHECK(pb.q.rotation->down.construction == "paley(12) x sylvester(2)");  // hidden 24
  for (int kv_bits : {16, 4}) {
    CAPTURE(kv_bits);
    const double err = max_fd_error(pb, kv_bits, {0, 1}, 4, 11);
    MESSAGE("QuaRot W4, kv" << kv_bits << ": max relative error VJP vs finite differences " << err);
  }
  CHECK(float_vs_double(pb, 16) < 1e-4);
  check_losses(pb, 16, 1e-5);
  check_losses(pb, 4, 1e-3);
  // W4A4: the forward quantizes the decoder linears' inputs as the engine's integer GEMMs do (same
  // loss up to roundings that flip a 4-bit code); the backward passes through them.
  Problem a4;
  a4.fp = pb.fp;
  make_problem(a4, {1, 5, 9}, tokens,
               quarot_w4(4, 0.9));
  const intactkv::DenseModel m = intactkv::make_dense_model(a4.q);
  CHECK(m.act_bits == 4);
  CHECK(m.act_clip == 0.9f);
  check_losses(a4, 4, 2e-2);
  check_recompute_equal(a4, 4);
}

TEST_CASE("calibration VJP through the later families' features: biases, q/k norms, sliding window, llama3 RoPE") {
  const OneThread one_thread;
  // One toy model with every feature the engine's decoder layer has beyond LLaMA-2; the forward is
  // the same decoder_layer code as the engine's, so the finite differences check the VJPs written
  // for these features, and the engine's layer outputs check the forward.
  model::Config c;
  c.dim = 16, c.hidden = 24, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 6, c.vocab = 32;
  c.max_pos = 64;
  c.qkv_bias = c.o_bias = c.mlp_bias = c.qk_norm = true;
  c.sliding_window = 5;  // shorter than prefix + sample: the prefix leaves the window of later tokens
  c.rope_scaling = {8.0f, 1.0f, 4.0f, 16};
  Problem pb;
  pb.fp = test::tiny_random_model(5, c, 0.2f, 0.f);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 10; ++i) tokens.push_back(3 + (i * 5) % 29);
  make_problem(pb, {1, 5, 9}, tokens, /*wbits=*/3);
  for (int kv_bits : {16, 4}) {
    CAPTURE(kv_bits);
    const double err = max_fd_error(pb, kv_bits, {0, 1}, 4, 3);
    MESSAGE("families' features, kv" << kv_bits << ": max relative error VJP vs finite differences " << err);
  }
  CHECK(float_vs_double(pb, 16) < 1e-4);
  check_losses(pb, 16, 1e-5);
  check_recompute_equal(pb, 4);
}
