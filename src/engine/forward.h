// The forward pass of a LLaMA model over a batch of new tokens appended to a KV cache, in the
// order llama2.c reads: embed → per layer (rmsnorm, q/k/v, rope, attention, o, residual, rmsnorm,
// SwiGLU FFN, residual) → final rmsnorm → logits. Speed lives in the kernels it calls.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/decoder_layer.h"
#include "engine/kv_cache.h"
#include "kernels/ops.h"
#include "model/weights.h"

namespace ikv::engine {

// What a forward call may hand back besides logits (all optional).
struct ForwardTaps {
  // Decoder-layer outputs (the residual stream after each layer) [n_layers][n * dim].
  std::vector<std::vector<float>>* layer_outputs = nullptr;
  // Attention probabilities per layer [n_layers][n_heads * n * (p0 + n)].
  std::vector<std::vector<float>>* attention_probs = nullptr;
};

class Engine {
 public:
  explicit Engine(const model::Weights& w);
  const model::Weights& weights() const { return w_; }
  const model::Config& config() const { return w_.config; }

  // Runs tokens at positions cache.len .. cache.len+n-1 and appends their keys/values to the
  // cache. logits receives [n - logits_from, vocab] for positions logits_from..n-1 (pass
  // logits_from = n to skip the head entirely).
  void forward(KVCache& cache, const int32_t* tokens, int64_t n, std::vector<float>* logits, int64_t logits_from = 0,
               const ForwardTaps& taps = {}) const;

  // Several sequences in one forward (the loglikelihood scorer): tokens [rows.rows()] run at the
  // positions and store their keys/values at the cache slots `rows` gives, each row attending as
  // its segment says (kernels::PackedRows); cache.len is neither read nor changed. logits receives
  // [logit_rows.size(), vocab] for those rows, in that order.
  // A row's arithmetic does not depend on the other rows, their number or the thread count: every
  // linear (and the head) runs on blocks of exactly kPackedRowBlock rows (the last block padded
  // with copies of its last row), so oneDNN sees one shape whatever the batch; attention is
  // per row (kernels::attention with PackedRows); norms, RoPE, SwiGLU and the KV quantizer are
  // per row already.
  static constexpr int64_t kPackedRowBlock = 128;
  void forward_packed(KVCache& cache, const int32_t* tokens, const kernels::PackedRows& rows,
                      const std::vector<int64_t>& logit_rows, std::vector<float>* logits) const;

  // Runs decoder layer `layer` alone over x [n, dim] (in place) as positions 0..n-1 of a fresh
  // sequence, optionally handing back its linears' inputs: the layer-by-layer pass of GPTQ and AWQ,
  // which quantize a layer and then feed its quantized output to the next one.
  void layer_forward(int64_t layer, float* x, int64_t n, LinearInputs* inputs = nullptr) const;

 private:
  // Decoder layer `layer` over x [n, dim] at positions cache.len.., using cache layer `cache_layer`.
  void run_layer(int64_t layer, KVCache& cache, int64_t cache_layer, float* x, int64_t n, LayerScratch<float>& s,
                 float* probs, LinearInputs* inputs, const kernels::PackedRows* packed = nullptr) const;
  // The embedding rows of n tokens into x [n, dim] (ids checked).
  void embed(const int32_t* tokens, int64_t n, float* x) const;

  const model::Weights& w_;
  kernels::RopeTable rope_;
};

}  // namespace ikv::engine
