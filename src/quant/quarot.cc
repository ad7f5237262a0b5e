#include "quant/quarot.h"

#include <memory>

#include "io/error.h"

namespace ikv::quant {
namespace {

// W [out, in] ← W diag(g): the norm scale g [in] moves into the linear that reads the norm.
void scale_columns(kernels::Linear& l, std::vector<float>& g) {
  std::vector<float>& w = kernels::dense_f32_weight(l);
  for (int64_t o = 0; o < l.out; ++o)
    for (int64_t i = 0; i < l.in; ++i) w[o * l.in + i] *= g[i];
}

// W [t.n, cols] ← Tᵀ W, i.e. Wᵀ ← Wᵀ T: transposed, rotated as rows, transposed back.
void rotate_output_rows(const kernels::HadamardTransform& t, float* w, int64_t cols) {
  const int64_t n = t.n;
  std::vector<float> wt(n * cols);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < cols; ++c) wt[c * n + r] = w[r * cols + c];
  kernels::hadamard_rows(t, wt.data(), cols);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] = wt[c * n + r];
}

}  // namespace

void rotate_ends(model::Weights& w, uint64_t seed) {
  const model::Config& c = w.config;
  if (w.rotation) fail(w.source, ": the model is already rotated (QuaRot)");
  // fp32 weights, or 16-bit ones as stored (upcast exactly, a layer at a time, as they are rotated).
  auto dense = [&](const kernels::Linear& l, const std::string& name) {
    const auto* d = std::get_if<kernels::DenseF32>(&l.weight);
    const auto* h = std::get_if<kernels::DenseHalf>(&l.weight);
    if (!(d && !d->w.empty() && static_cast<int64_t>(d->w.size()) == l.out * l.in) &&
        !(h && h->compute == kernels::Activations::kFp32))
      fail("QuaRot: ", name, " is not a dense fp32 weight (rotate before quantizing, at fp32)");
  };
  for (auto& nl : model::named_linears(w)) dense(*nl.linear, nl.name);
  dense(w.lm_head, "lm_head.weight");
  auto rot = std::make_shared<model::Rotation>();
  rot->seed = seed;
  rot->residual = kernels::make_hadamard(c.dim, seed, /*random_signs=*/true);
  rot->head = kernels::make_hadamard(c.head_dim, seed);
  rot->down = kernels::make_hadamard(c.hidden, seed);
  kernels::expand_to_f32(w.lm_head);
  scale_columns(w.lm_head, w.final_norm);
  std::fill(w.final_norm.begin(), w.final_norm.end(), 1.0f);
  kernels::hadamard_rows(rot->residual, kernels::dense_f32_weight(w.lm_head).data(), w.lm_head.out);
  // E ← E Q row by row as rows are looked up: the table stays as stored.
  w.embed.rotate = std::shared_ptr<const kernels::HadamardTransform>(rot, &rot->residual);
  w.rotation = std::move(rot);
}

void rotate_layer(model::Weights& w, int64_t layer, bool weights) {
  const model::Config& c = w.config;
  if (!w.rotation) fail("QuaRot: rotate_layer before rotate_ends");
  if (layer < 0 || layer >= c.n_layers) fail("QuaRot: layer ", layer, " is outside 0..", c.n_layers - 1);
  const kernels::HadamardTransform &Q = w.rotation->residual, &H = w.rotation->head, &F = w.rotation->down;
  const int64_t D = c.dim, Hd = c.head_dim;
  model::LayerWeights& L = w.layers[layer];
  if (weights) {
    for (kernels::Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) kernels::expand_to_f32(*l);
    for (kernels::Linear* l : {&L.q, &L.k, &L.v}) scale_columns(*l, L.attn_norm);
    for (kernels::Linear* l : {&L.gate, &L.up}) scale_columns(*l, L.ffn_norm);
    for (kernels::Linear* l : {&L.q, &L.k, &L.v, &L.gate, &L.up})
      kernels::hadamard_rows(Q, kernels::dense_f32_weight(*l).data(), l->out);
    std::vector<float>& o = kernels::dense_f32_weight(L.o);
    std::vector<float>& down = kernels::dense_f32_weight(L.down);
    rotate_output_rows(Q, o.data(), L.o.in);
    rotate_output_rows(Q, down.data(), L.down.in);
    std::vector<float>& v = kernels::dense_f32_weight(L.v);
    for (int64_t h = 0; h < c.n_kv_heads; ++h) rotate_output_rows(H, &v[h * Hd * D], D);
    kernels::hadamard_rows(H, o.data(), D * c.n_heads);  // every row's head segments
    kernels::hadamard_rows(F, down.data(), D);
  }
  std::fill(L.attn_norm.begin(), L.attn_norm.end(), 1.0f);
  std::fill(L.ffn_norm.begin(), L.ffn_norm.end(), 1.0f);
  // Output biases rotate with their outputs (y' = y·T, so b' = b·T).
  if (!L.v.bias.empty()) kernels::hadamard_rows(H, L.v.bias.data(), c.n_kv_heads);
  if (!L.o.bias.empty()) kernels::hadamard_rows(Q, L.o.bias.data(), 1);
  if (!L.down.bias.empty()) kernels::hadamard_rows(Q, L.down.bias.data(), 1);
}

void rotate_model(model::Weights& w, uint64_t seed) {
  rotate_ends(w, seed);
  for (int64_t l = 0; l < w.config.n_layers; ++l) rotate_layer(w, l);
}

void set_activation_quant(model::Weights& w, int bits, float clip) {
  if (bits != 16 && (bits < 2 || bits > 8)) fail("activation bits ", bits, " must be 2..8 or 16");
  if (!(clip > 0 && clip <= 1)) fail("activation clip ratio ", clip, " must be in (0, 1]");
  for (auto& nl : model::named_linears(w)) kernels::set_act_quant(*nl.linear, bits, clip);
}

void residual_to_model(const model::Weights& w, float* x, int64_t rows) {
  if (w.rotation) kernels::hadamard_rows(w.rotation->residual, x, rows);
}

void kv_to_model(const model::Weights& w, float* x, int64_t rows, bool inverse) {
  if (!w.rotation) return;
  if (inverse)
    kernels::hadamard_rows_inverse(w.rotation->head, x, rows);
  else
    kernels::hadamard_rows(w.rotation->head, x, rows);
}

}  // namespace ikv::quant
