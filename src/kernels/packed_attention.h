// Attention over several sequences packed into one batch of query rows (the loglikelihood
// scorer's forwards, Engine::forward_packed): the row layout, and the kernels that compute each row
// on its own.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/ops.h"

namespace ikv::kernels {

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

// Attention of a packed batch (s.packed; what kernels::attention does with one): each query row
// on its own, its sums over its keys in an order fixed by those keys alone (position order, AVX2
// lanes by key index for fp32 with head_dim % 8 == 0, 16 lanes otherwise), so its output does not
// depend on the other rows, on how the keys before it are split into spans, or on the thread count.
template <typename T>
void packed_attention(const AttentionShape& s, const T* q, const T* k_cache, const T* v_cache, T* out);
// The plain twin (double accumulation, softmax in closed form).
void packed_attention_reference(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                                float* out);

}  // namespace ikv::kernels
