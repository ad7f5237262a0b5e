// Element-wise and attention ops of the LLaMA forward pass, on row-major fp32 activations.
// The attention op has a plain reference twin (attention_reference) that tests compare against.
#pragma once
#include <cstdint>
#include <vector>

namespace ikv::kernels {

// out[t] = x[t] / sqrt(mean(x[t]²) + eps) * weight, for n rows of width d (HF LlamaRMSNorm).
void rmsnorm(const float* x, const float* weight, int64_t n, int64_t d, float eps, float* out);

// Rotary tables for positions [0, max_pos): cos/sin[p * half + i] for frequency i, computed as HF
// does (inv_freq = 1 / theta^(2i/d) in fp32, angle = p · inv_freq in fp32).
struct RopeTable {
  int64_t half = 0, max_pos = 0;
  std::vector<float> cos, sin;
};
// LLaMA-3's frequency scaling (HF rope_type "llama3"): wavelengths longer than
// original_max_pos / low_freq_factor are divided by factor, shorter than original_max_pos /
// high_freq_factor kept, those between interpolated. factor 0 = no scaling.
struct RopeScaling {
  float factor = 0, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_pos = 8192;
};
RopeTable make_rope_table(int64_t head_dim, int64_t max_pos, float theta, const RopeScaling& scaling = {});
// Rotates n_heads heads of one token in place at position pos, HF rotate_half layout (pairs
// (i, i + d/2)). sign -1 rotates back: the transpose, so also the rotation's VJP. A template for
// the FP64 gradient checks of intactkv/backward.
template <typename T>
void rope_rotate(T* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeTable& rope, T sign = T(1)) {
  const int64_t half = head_dim / 2;
  const float* c = &rope.cos[pos * half];
  const float* s = &rope.sin[pos * half];
  for (int64_t h = 0; h < n_heads; ++h) {
    T* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const T a = xh[i], b = xh[i + half], sn = sign * static_cast<T>(s[i]), cs = static_cast<T>(c[i]);
      xh[i] = a * cs - b * sn;
      xh[i + half] = b * cs + a * sn;
    }
  }
}

// h[i] = silu(gate[i]) * up[i], in place into gate.
void swiglu(float* gate, const float* up, int64_t n);

struct PackedRows;  // kernels/packed_attention.h

// Causal GQA attention of n new queries at positions p0 .. p0+n-1 over cache positions
// 0 .. p0+n-1. q: [n, n_heads*d] (after RoPE), k/v cache: [n_kv_heads, cap, d], out: [n, n_heads*d].
// With a sliding window w > 0 (Mistral), the query at position p sees positions p-w+1 .. p only.
// If probs_out is non-null it receives the attention probabilities [n_heads, n, p0+n]. T = double
// serves the calibration's gradient checks (intactkv/backward).
// With `packed` set the n = packed->rows() queries are several sequences (PackedRows; p0 is not
// used, the window applies to positions), each row computed on its own by packed_attention
// (kernels/packed_attention.h); no probabilities are recorded then.
struct AttentionShape {
  int64_t n = 0, p0 = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, cap = 0;
  int64_t window = 0;
  const PackedRows* packed = nullptr;
};
template <typename T>
void attention(const AttentionShape& s, const T* q, const T* k_cache, const T* v_cache, T* out,
               T* probs_out = nullptr);
// The plain twin (double accumulation), packed batches included.
void attention_reference(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                         float* out);

}  // namespace ikv::kernels
