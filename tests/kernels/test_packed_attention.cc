// Attention of packed batches (kernels/packed_attention.h) against its reference twin and the
// plain causal kernel; each row's bits independent of the rest of its batch.
#include <algorithm>
#include <cmath>

#include "kernels/packed_attention.h"
#include "test_util.h"

using namespace ikv;

namespace {
std::vector<float> randn(size_t n, uint32_t seed) { return test::gaussian(n, seed); }
}  // namespace

TEST_CASE("packed attention: several sequences, spans, windows; each row on its own") {
  // Cache slots: 0..3 a shared prefix (positions 0..3), 10..12 sequence A's context (positions
  // 4..6), then the batch's rows from slot 20. Rows: A's continuation (3 rows, positions 7..9)
  // seeing [0,4) and [10,13); B (4 rows, positions 4..7) seeing the prefix; C, one row at
  // position 3 seeing [0,3) (a recomputed last prefix position).
  const int64_t heads = 8, kv = 2, d = 64, cap = 32;
  kernels::PackedRows pr;
  auto segment = [&](int64_t len, int64_t pos, const std::vector<kernels::KeySpan>& before) {
    pr.add_segment(pos, 20 + pr.rows(), before);
    for (int64_t i = 1; i < len; ++i) pr.extend_last();
  };
  segment(3, 7, {{0, 4, 0}, {10, 3, 4}});
  segment(4, 4, {{0, 4, 0}});
  segment(1, 3, {{0, 3, 0}});
  const int64_t n = pr.rows();
  REQUIRE(n == 8);
  CHECK(pr.row_pos == std::vector<int64_t>{7, 8, 9, 4, 5, 6, 7, 3});
  CHECK(pr.row_slot == std::vector<int64_t>{20, 21, 22, 23, 24, 25, 26, 27});
  auto q = randn(n * heads * d, 3), k = randn(kv * cap * d, 4), v = randn(kv * cap * d, 5);
  for (int64_t window : {0, 3}) {
    kernels::AttentionShape s{n, 0, heads, kv, d, cap, window, &pr};
    std::vector<float> out(n * heads * d), ref(out.size());
    kernels::attention(s, q.data(), k.data(), v.data(), out.data());
    kernels::attention_reference(s, q.data(), k.data(), v.data(), ref.data());
    for (size_t i = 0; i < out.size(); ++i) REQUIRE(std::fabs(out[i] - ref[i]) < 1e-5);
  }
  // Sequence A as one causal sequence (the Eigen kernel): its keys moved to slots = positions.
  {
    std::vector<float> kc(kv * cap * d), vc(kc.size());
    auto put = [&](int64_t from, int64_t to) {
      for (int64_t g = 0; g < kv; ++g) {
        std::copy_n(&k[(g * cap + from) * d], d, &kc[(g * cap + to) * d]);
        std::copy_n(&v[(g * cap + from) * d], d, &vc[(g * cap + to) * d]);
      }
    };
    for (int64_t p = 0; p < 4; ++p) put(p, p);
    for (int64_t p = 4; p < 7; ++p) put(10 + p - 4, p);
    for (int64_t p = 7; p < 10; ++p) put(20 + p - 7, p);
    kernels::AttentionShape plain{3, 7, heads, kv, d, cap};
    kernels::AttentionShape s{n, 0, heads, kv, d, cap, 0, &pr};
    std::vector<float> a(3 * heads * d), packed(n * heads * d);
    kernels::attention(plain, q.data(), kc.data(), vc.data(), a.data());
    kernels::attention(s, q.data(), k.data(), v.data(), packed.data());
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::fabs(a[i] - packed[i]) < 1e-5);
  }
  // Row independence, bit for bit: B's rows alone in a batch, and with A's context split into
  // other spans (same keys, same positions), give the same bits as in the batch above.
  kernels::AttentionShape s{n, 0, heads, kv, d, cap, 0, &pr};
  std::vector<float> all(n * heads * d);
  kernels::attention(s, q.data(), k.data(), v.data(), all.data());
  {
    kernels::PackedRows alone;
    alone.add_segment(4, 23, {{0, 4, 0}});
    for (int i = 0; i < 3; ++i) alone.extend_last();
    kernels::AttentionShape sb{4, 0, heads, kv, d, cap, 0, &alone};
    std::vector<float> out(4 * heads * d);
    kernels::attention(sb, q.data() + 3 * heads * d, k.data(), v.data(), out.data());
    CHECK(std::equal(out.begin(), out.end(), all.begin() + 3 * heads * d));
  }
  {
    kernels::PackedRows split;
    split.add_segment(7, 20, {{0, 2, 0}, {2, 2, 2}, {10, 1, 4}, {11, 2, 5}});
    split.extend_last(), split.extend_last();
    kernels::AttentionShape sa{3, 0, heads, kv, d, cap, 0, &split};
    std::vector<float> out(3 * heads * d);
    kernels::attention(sa, q.data(), k.data(), v.data(), out.data());
    CHECK(std::equal(out.begin(), out.end(), all.begin()));
  }
  // The 16-lane path (head_dim not a multiple of 8; double, as the calibration's checks run it).
  for (int64_t dd : {36, 64}) {
    CAPTURE(dd);
    const auto qs = randn(n * heads * dd, 6), ks = randn(kv * cap * dd, 7), vs = randn(kv * cap * dd, 8);
    kernels::AttentionShape sd{n, 0, heads, kv, dd, cap, 3, &pr};
    std::vector<float> out(n * heads * dd), ref(out.size());
    kernels::attention(sd, qs.data(), ks.data(), vs.data(), out.data());
    kernels::packed_attention_reference(sd, qs.data(), ks.data(), vs.data(), ref.data());
    for (size_t i = 0; i < out.size(); ++i) REQUIRE(std::fabs(out[i] - ref[i]) < 1e-5);
    const std::vector<double> qd(qs.begin(), qs.end()), kd(ks.begin(), ks.end()), vd(vs.begin(), vs.end());
    std::vector<double> outd(out.size());
    kernels::attention(sd, qd.data(), kd.data(), vd.data(), outd.data());
    for (size_t i = 0; i < out.size(); ++i) REQUIRE(std::fabs(outd[i] - ref[i]) < 1e-6);
  }
  // No probabilities for packed batches.
  std::vector<float> probs(heads * n * cap);
  CHECK_THROWS(kernels::attention(s, q.data(), k.data(), v.data(), all.data(), probs.data()));
}
