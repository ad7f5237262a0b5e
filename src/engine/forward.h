// The forward pass of a LLaMA model over a batch of new tokens appended to a KV cache, in the
// order llama2.c reads: embed → per layer (rmsnorm, q/k/v, rope, attention, o, residual, rmsnorm,
// SwiGLU FFN, residual) → final rmsnorm → logits. Speed lives in the kernels it calls.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/decoder_layer.h"
#include "engine/kv_cache.h"
#include "engine/kv_scheme.h"
#include "kernels/ops.h"
#include "model/weights.h"

namespace ikv::engine {

// What a forward call may hand back besides logits (all optional).
struct ForwardTaps {
  // Decoder-layer outputs (the residual stream after each layer) [n_layers][n * dim].
  std::vector<std::vector<float>>* layer_outputs = nullptr;
  // Attention probabilities per layer [n_layers][n_heads * n * (p0 + n)].
  std::vector<std::vector<float>>* attention_probs = nullptr;
  // The inputs of every layer's linears [n_layers] (static-scale calibration).
  std::vector<LinearInputs>* linear_inputs = nullptr;
};

class Engine {
 public:
  explicit Engine(const model::Weights& w, EngineOptions opt = {});
  const model::Weights& weights() const { return w_; }
  const EngineOptions& options() const { return opt_; }
  // With kv_protect sinks on a quantized cache: per forward call so far, how many of its tokens
  // kept their K/V unquantized in some layer. Not thread-safe: one Engine per evaluating thread.
  const std::vector<int64_t>& sinks_kept() const { return sinks_kept_; }
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
  // Not with a KV quantizer that looks across a sequence's tokens (KIVI's per-channel keys, the
  // sinks kept by their activation relative to the other tokens): packs_rows says whether
  // forward_packed can run with a cache of kv_bits.
  static constexpr int64_t kPackedRowBlock = 128;
  bool packs_rows(int kv_bits) const { return kv_bits >= 16 || (!opt_.kv.kivi() && !opt_.kv.protect_sinks); }
  void forward_packed(KVCache& cache, const int32_t* tokens, const kernels::PackedRows& rows,
                      const std::vector<int64_t>& logit_rows, std::vector<float>* logits) const;

  // forward() in steps, for passes that run many sequences one decoder layer at a time
  // (layer-major evaluation): embed, then for each layer in order forward_layer on every
  // sequence's cache, then head. Each step does exactly what forward() does at that point, so the
  // results are bit-identical to forward() on each sequence alone.
  // x [n, dim] ← the embeddings of tokens (ids checked).
  void embed(const int32_t* tokens, int64_t n, float* x) const;
  // Decoder layer `layer` over x [n, dim] in place at positions cache.len.., writing that layer's
  // keys/values; cache.len is not advanced (the caller does once the last layer has run).
  // sinks_kept [n] (kv_protect sinks) is or-ed with the tokens this layer kept unquantized.
  void forward_layer(int64_t layer, KVCache& cache, float* x, int64_t n, uint8_t* sinks_kept) const;
  // After a sequence's last layer: what forward() records at its end (sinks_kept()).
  void finish_sequence(const KVCache& cache, const uint8_t* sinks_kept, int64_t n) const;
  // logits [m, vocab] of the final-norm of x [m, dim].
  void head(const float* x, int64_t m, std::vector<float>* logits) const;

  // Runs decoder layer `layer` alone over x [n, dim] (in place) as positions 0..n-1 of a fresh
  // sequence, optionally handing back its linears' inputs: the layer-by-layer pass of GPTQ and AWQ,
  // which quantize a layer and then feed its quantized output to the next one.
  void layer_forward(int64_t layer, float* x, int64_t n, LinearInputs* inputs = nullptr) const;

 private:
  // Decoder layer `layer` over x [n, dim] at positions cache.len.., using cache layer `cache_layer`.
  // sinks_kept (optional, [n]) is or-ed with the tokens this layer kept unquantized.
  void run_layer(int64_t layer, KVCache& cache, int64_t cache_layer, float* x, int64_t n, LayerScratch<float>& s,
                 float* probs, LinearInputs* inputs, uint8_t* sinks_kept,
                 const kernels::PackedRows* packed = nullptr) const;

  const model::Weights& w_;
  EngineOptions opt_;
  mutable std::vector<int64_t> sinks_kept_;
  kernels::RopeTable rope_;
};

}  // namespace ikv::engine
