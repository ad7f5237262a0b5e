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

// Several sequences packed into one batch of query rows (the loglikelihood scorer runs many
// requests, and the contexts they share once, in one forward). Rows come in segments: the rows of
// a segment are consecutive tokens of one sequence, at consecutive positions and cache slots. Row
// i of a segment sees the segment's key spans (whole, in position order: the tokens before the
// segment, wherever they sit in the cache), then its own segment's rows 0..i. A span or segment
// says where its keys live (slot) and which positions they are (pos).
struct KeySpan {
  int64_t slot = 0, len = 0, pos = 0;  // cache slots slot..slot+len-1 hold positions pos..pos+len-1
};
struct QuerySegment {
  int64_t row = 0, len = 0;                // query rows row..row+len-1
  int64_t pos = 0, slot = 0;               // at positions pos.. and cache slots slot..
  int64_t spans_begin = 0, spans_end = 0;  // the keys before pos they see: PackedRows::spans[begin, end)
};
struct PackedRows {
  std::vector<KeySpan> spans;
  std::vector<QuerySegment> segments;    // in row order, covering rows 0..rows()-1
  std::vector<int64_t> row_pos, row_slot, row_segment;  // per row (kept by the two methods below)

  // A new segment of one row at position pos and cache slot `slot`, seeing `before` first.
  void add_segment(int64_t pos, int64_t slot, const std::vector<KeySpan>& before);
  // One more row in the last segment (the next position and slot).
  void extend_last();
  int64_t rows() const { return static_cast<int64_t>(row_pos.size()); }
  void clear() { spans.clear(), segments.clear(), row_pos.clear(), row_slot.clear(), row_segment.clear(); }
};

// Causal GQA attention of n new queries at positions p0 .. p0+n-1 over cache positions
// 0 .. p0+n-1. q: [n, n_heads*d] (after RoPE), k/v cache: [n_kv_heads, cap, d], out: [n, n_heads*d].
// With a sliding window w > 0 (Mistral), the query at position p sees positions p-w+1 .. p only.
// If probs_out is non-null it receives the attention probabilities [n_heads, n, p0+n]. T = double
// serves the calibration's gradient checks (intactkv/backward).
// With `packed` set the n = packed->rows() queries are several sequences (PackedRows; p0 is not
// used, the window applies to positions) and each query row is computed on its own, its sums
// taken over its keys in an order fixed by those keys alone (position order, AVX2 lanes by key
// index): its output does not depend on the other rows, on how the keys before it are split into
// spans, or on the thread count. No probabilities are recorded then.
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
