#include "kernels/linear.h"

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "kernels/int8_gemm.h"
#include "kernels/packed_matmul.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels {

Linear make_dense(std::vector<float> w, int64_t out, int64_t in) {
  Linear l;
  l.out = out;
  l.in = in;
  l.weight = DenseF32{std::move(w)};
  return l;
}

Linear make_dense_half(HalfMatrix w, int64_t out, int64_t in) {
  Linear l;
  l.out = out;
  l.in = in;
  l.weight = DenseHalf{std::move(w)};
  return l;
}

void set_dense(Linear& l, std::vector<float> w) { l.weight = DenseF32{std::move(w)}; }

std::vector<float>& expand_to_f32(Linear& l) {
  if (const DenseHalf* h = std::get_if<DenseHalf>(&l.weight)) set_dense(l, half_to_f32(h->w.type, h->w.data, l.out * l.in));
  return dense_f32_weight(l);
}

void set_packed(Linear& l, std::shared_ptr<const PackedMatrix> m, std::vector<int32_t> in_perm) {
  Packed p;
  p.m = std::move(m);
  p.in_perm = std::move(in_perm);
  l.weight = std::move(p);
  l.held_out.clear();
}

void to_bf16(Linear& l) {
  if (Packed* p = std::get_if<Packed>(&l.weight)) {
    p->rounding = Activations::kBf16;
  } else if (DenseHalf* h = std::get_if<DenseHalf>(&l.weight)) {
    if (h->w.type != Half::kBf16) {  // fp16: converted once; the fp16 storage is let go
      std::vector<uint16_t> b(static_cast<size_t>(l.out * l.in));
      half_to_bf16(h->w.type, h->w.data, l.out * l.in, b.data());
      h->w = owned_half(Half::kBf16, std::move(b));
    }
    h->compute = Activations::kBf16;
  } else if (DenseF32* d = std::get_if<DenseF32>(&l.weight)) {
    std::vector<uint16_t> b(d->w.size());
    for (size_t i = 0; i < d->w.size(); ++i) b[i] = io::fp32_to_bf16(d->w[i]);
    l.weight = DenseHalf{owned_half(Half::kBf16, std::move(b)), Activations::kBf16};
  }
}

void use_q8_inputs(Linear& l) {
  Packed* p = std::get_if<Packed>(&l.weight);
  if (!p) return;
  p->rounding = Activations::kQ8;
  if (p->q8_tiles || !q8_tiles_runs_here() || !q8_tiles_cover(*p->m)) return;
  p->q8_tiles = std::make_shared<const Q8Tiles>(tile_for_q8(*p->m));
  p->m.reset();  // the tiles are the codes now
}

std::shared_ptr<const PackedMatrix> packed_codes(const Packed& p) {
  if (p.m) return p.m;
  if (!p.q8_tiles) fail("packed linear without codes");
  return std::make_shared<const PackedMatrix>(untile_q8(*p.q8_tiles));
}

void set_act_quant(Linear& l, int bits, float clip) {
  l.act_quant = {bits, clip};
  Packed* p = std::get_if<Packed>(&l.weight);
  if (!p) return;
  p->int8.reset();
  if (bits >= 16) return;
  const std::shared_ptr<const PackedMatrix> m = packed_codes(*p);
  if (m->sym && m->group == m->cols) p->int8 = std::make_shared<const Int8Matrix>(int8_from_packed(*m));
}

std::vector<float>& dense_f32_weight(Linear& l) {
  if (DenseF32* d = std::get_if<DenseF32>(&l.weight)) return d->w;
  fail("linear [", l.out, ", ", l.in, "] is not a dense fp32 weight");
}

const std::vector<float>& dense_f32_weight(const Linear& l) {
  if (const DenseF32* d = std::get_if<DenseF32>(&l.weight)) return d->w;
  fail("linear [", l.out, ", ", l.in, "] is not a dense fp32 weight");
}

namespace {

// The per-token quantized input (codes and scales) of an activation-quantized layer.
struct QuantizedInput {
  std::vector<int8_t> q;
  std::vector<float> scale;
};

QuantizedInput quantize_input(const ActQuant& a, const float* X, int64_t M, int64_t K) {
  QuantizedInput xq{std::vector<int8_t>(static_cast<size_t>(M * K)), std::vector<float>(M)};
  if (a.static_scale > 0)
    quantize_static(X, M, K, a.bits, a.static_scale, xq.q.data(), xq.scale.data());
  else
    quantize_per_token(X, M, K, a.bits, a.clip, xq.q.data(), xq.scale.data());
  return xq;
}

// The fake-quantized input (quantized, dequantized to fp32 in buf) that a layer without the integer
// GEMM multiplies.
const float* dequantized_input(const QuantizedInput& xq, int64_t M, int64_t K, std::vector<float>& buf) {
  buf.resize(static_cast<size_t>(M * K));
  dequantize_per_token(xq.q.data(), xq.scale.data(), M, K, buf.data());
  return buf.data();
}

void forward(const Linear& layer, const ActQuant& act, const DenseF32& d, const float* X, int64_t M, float* Y) {
  std::vector<float> xp;
  if (act.bits < 16) X = dequantized_input(quantize_input(act, X, M, layer.in), M, layer.in, xp);
  gemm_f32(X, M, layer.in, d.w.data(), layer.out, Y);
}

void forward(const Linear& layer, const ActQuant& act, const DenseHalf& d, const float* X, int64_t M, float* Y) {
  std::vector<float> xp;
  if (act.bits < 16) X = dequantized_input(quantize_input(act, X, M, layer.in), M, layer.in, xp);
  if (d.compute == Activations::kBf16) {
    if (d.w.type != Half::kBf16) fail("linear [", layer.out, ", ", layer.in, "]: bf16 compute on a weight not stored in bf16");
    return gemm_bf16(X, M, layer.in, d.w.data, layer.out, Y);
  }
  gemm_f32_half(X, M, layer.in, d.w.data, d.w.type, layer.out, Y);
}

// Gather into the packed column order, then quantize the input, then the fastest product the
// codes have: the integer GEMM, the q8 tiles, or the packed matmul.
void forward(const Linear& layer, const ActQuant& act, const Packed& p, const float* X, int64_t M, float* Y) {
  const int64_t K = layer.in;
  std::vector<float> xp;  // the input as the codes read it (gathered, or fake-quantized)
  if (!p.in_perm.empty()) {
    xp.resize(static_cast<size_t>(M * K));
#pragma omp parallel for if (M * K > (1 << 16))
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < K; ++j) xp[m * K + j] = X[m * K + p.in_perm[j]];
    X = xp.data();
  }
  if (act.bits < 16) {
    const QuantizedInput xq = quantize_input(act, X, M, K);
    if (p.int8) return int8_gemm(xq.q.data(), xq.scale.data(), M, *p.int8, Y);
    X = dequantized_input(xq, M, K, xp);
  }
  if (p.q8_tiles && q8_tiles_runs_here()) return q8_tiles_matmul(*p.q8_tiles, X, M, Y);
  packed_matmul(*packed_codes(p), X, M, Y, Isa::kAuto, p.rounding);
}

std::vector<float> dense_weight(const Linear&, const DenseF32& d) { return d.w; }

std::vector<float> dense_weight(const Linear& layer, const DenseHalf& d) {
  return half_to_f32(d.w.type, d.w.data, layer.out * layer.in);
}

std::vector<float> dense_weight(const Linear& layer, const Packed& p) {
  std::vector<float> w(static_cast<size_t>(layer.out * layer.in));
  dequantize(*packed_codes(p), w.data());
  if (!p.in_perm.empty()) {
    std::vector<float> unperm(w.size());
    for (int64_t n = 0; n < layer.out; ++n)
      for (int64_t j = 0; j < layer.in; ++j) unperm[n * layer.in + p.in_perm[j]] = w[n * layer.in + j];
    w = std::move(unperm);
  }
  for (const HeldOutWeight& h : layer.held_out) w[h.row * layer.in + h.col] = h.value;
  return w;
}

}  // namespace

void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y) {
  linear_forward(layer, X, M, Y, layer.act_quant);
}

void linear_forward(const Linear& layer, const float* X, int64_t M, float* Y, const ActQuant& act) {
  std::visit([&](const auto& form) { forward(layer, act, form, X, M, Y); }, layer.weight);
  for (const HeldOutWeight& h : layer.held_out)
    for (int64_t m = 0; m < M; ++m) Y[m * layer.out + h.row] += h.delta * X[m * layer.in + h.col];
  add_bias(layer.bias, M, Y);
}

void hold_out_weight(Linear& l, int64_t row, int64_t col, float value) {
  if (!std::holds_alternative<Packed>(l.weight)) fail("linear [", l.out, ", ", l.in, "]: only packed codes hold weights out");
  if (row < 0 || row >= l.out || col < 0 || col >= l.in)
    fail("linear [", l.out, ", ", l.in, "]: held-out weight [", row, ", ", col, "] is outside the matrix");
  std::vector<HeldOutWeight> kept;
  for (const HeldOutWeight& h : l.held_out)
    if (h.row != row || h.col != col) kept.push_back(h);
  l.held_out.clear();  // the stored value, without an earlier correction of this entry
  const float stored = linear_dense_weight(l)[row * l.in + col];
  kept.push_back({row, col, value, value - stored});
  l.held_out = std::move(kept);
}

std::vector<float> linear_dense_weight(const Linear& layer) {
  return std::visit([&](const auto& form) { return dense_weight(layer, form); }, layer.weight);
}

}  // namespace ikv::kernels
