// The IntactKV calibration objective of one sample and its gradient with respect to the prefix
// keys and values of every layer (activation gradients only; the model's weights are frozen).
//
// The sample's new tokens run through the quantized model at positions P..P+n-1 with the
// trainable prefix K/V at positions 0..P-1 (keys after RoPE, as Prefix stores them). The loss is
// the reference's: Σ over decoder layers l of mean((h_q,l − h_fp,l)²)/2 over the loss tokens × dim,
// where h_l is the residual stream after layer l. The prefix of layer l feeds the losses of
// layers l..L-1, so its gradient gathers every later layer's loss through the residual stream.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/ops.h"
#include "model/weights.h"
#include "quant/quarot.h"

namespace ikv::intactkv {

// The quantized model as the calibration multiplies with it: every decoder linear as a dense fp32
// [out, in] matrix (kernels::linear_dense_weight), used by the forward (the engine's decoder_layer
// with this backend) and the backward alike, so that the gradient is exact for the function the
// forward computes. Embeddings, norms and rotations are read from the Weights, which must outlive
// this.
struct DenseLayer {
  std::vector<float> q, k, v, o, gate, up, down;
};
struct DenseModel {
  const model::Weights* weights = nullptr;
  kernels::RopeTable rope;
  // A QuaRot model's activation quantization (the decoder linears' inputs, per token) runs in the
  // forward and is the identity in the backward (straight-through estimator, as for the KV-cache
  // quantizer); its online rotations come with the Weights.
  int act_bits = 16;
  float act_clip = 1.0f;
  const model::Config& config() const { return weights->config; }

  // Layer l dequantized. When every layer in fp32 takes at most make_dense_model's keep_bytes,
  // each is made once and kept; otherwise (a 7B student: 26 GB) a layer is made when asked for and
  // only the last one asked for is kept: a sample's forward runs 0..L-1 and its backward L-1..0,
  // so each layer is dequantized about twice per step, and memory holds one. Same values either way.
  std::shared_ptr<const DenseLayer> layer(int64_t l) const;

  struct Held {  // the dequantized layers held, shared by copies of the model
    std::mutex mutex;
    bool keep_all = true;
    std::vector<std::shared_ptr<const DenseLayer>> layers;
  };
  std::shared_ptr<Held> held;
};
DenseModel make_dense_model(const model::Weights& w, int64_t keep_bytes = int64_t{4} << 30);

// Prefix keys and values (or their gradients) per layer, each [n_kv_heads, P, head_dim].
template <typename T>
struct PrefixKV {
  std::vector<std::vector<T>> key, value;
  int64_t len = 0;  // P
};
// All zeros, shaped for the model and P positions.
template <typename T>
PrefixKV<T> zero_prefix_kv(const model::Config& c, int64_t P);

// The FP targets of one sample: the decoder-layer outputs at its loss tokens.
struct SampleTargets {
  std::vector<int64_t> rows;                // loss tokens as indices among the n new tokens, ascending
  std::vector<std::vector<float>> layers;   // [n_layers][rows.size() * dim]
};

struct SampleLoss {
  double total = 0;
  std::vector<double> per_layer;
};

// Test hook for KV-cache quantization. The backward treats the quantizer of the new tokens' K/V as
// the identity (straight-through estimator), which is the exact gradient of the forward with the
// quantization error x' − x held fixed. record = the forward stores that error; replay = it adds the
// stored error instead of quantizing, so finite differences see exactly the STE's function.
template <typename T>
struct KvQuantError {
  std::vector<std::vector<T>> k, v;  // per layer [n, kv_dim]
  bool replay = false;
};

// Returns the sample's loss; when grad is non-null, ADDS the loss's gradient to it (so several
// samples accumulate). tokens are the n new tokens (the prefix tokens are not rerun: the prefix KV
// stands in for them). kv_bits < 16 quantizes the new tokens' K/V as engine::Engine does; the
// prefix is never quantized. T = float is the training path; T = double serves the gradient check.
// Memory: the residual stream and K/V of every layer are kept for the backward; the other
// activations too while they fit in keep_activation_bytes, else each layer recomputes them from
// its input in the backward (LLaMA-7B × 1024 tokens: ~10 GB kept vs ~0.3 GB recomputing).
template <typename T>
SampleLoss prefix_loss(const DenseModel& m, const PrefixKV<T>& prefix, const int32_t* tokens, int64_t n,
                       const SampleTargets& targets, int kv_bits, std::type_identity_t<PrefixKV<T>>* grad,
                       std::type_identity_t<KvQuantError<T>>* kv_error = nullptr,
                       int64_t keep_activation_bytes = int64_t(1) << 30);

}  // namespace ikv::intactkv
