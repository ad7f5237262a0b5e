#include "kernels/packed_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "io/error.h"

namespace ikv::kernels {

void PackedRows::add_segment(int64_t pos, int64_t slot, const std::vector<KeySpan>& before) {
  QuerySegment seg;
  seg.row = rows(), seg.len = 1, seg.pos = pos, seg.slot = slot;
  seg.spans_begin = static_cast<int64_t>(spans.size());
  spans.insert(spans.end(), before.begin(), before.end());
  seg.spans_end = static_cast<int64_t>(spans.size());
  segments.push_back(seg);
  row_pos.push_back(pos), row_slot.push_back(slot), row_segment.push_back(static_cast<int64_t>(segments.size()) - 1);
}

void PackedRows::extend_last() {
  QuerySegment& seg = segments.back();
  row_pos.push_back(seg.pos + seg.len), row_slot.push_back(seg.slot + seg.len);
  row_segment.push_back(static_cast<int64_t>(segments.size()) - 1);
  ++seg.len;
}

namespace {

// The cache slots row r of a packed batch attends to, as (first slot, count) runs in position
// order: its segment's spans, then its segment's rows up to itself; the window (w > 0) keeps the
// positions pos-w+1 .. pos.
void visible_runs(const PackedRows& pr, int64_t r, int64_t window, std::vector<std::pair<int64_t, int64_t>>& runs) {
  runs.clear();
  const QuerySegment& seg = pr.segments[pr.row_segment[r]];
  const int64_t first = window > 0 ? pr.row_pos[r] - window + 1 : std::numeric_limits<int64_t>::min();
  auto add = [&](int64_t slot, int64_t len, int64_t pos) {
    const int64_t skip = first > pos ? std::min(len, first - pos) : 0;
    if (len > skip) runs.push_back({slot + skip, len - skip});
  };
  for (int64_t i = seg.spans_begin; i < seg.spans_end; ++i) add(pr.spans[i].slot, pr.spans[i].len, pr.spans[i].pos);
  add(seg.slot, r - seg.row + 1, seg.pos);
}

// a·b over d values in 16 fixed lanes, summed pairwise at the end: the same order for every call.
template <typename T>
T dot_lanes(const T* a, const T* b, int64_t d) {
  constexpr int64_t L = 16;
  T acc[L] = {};
  int64_t c = 0;
  for (; c + L <= d; c += L)
    for (int64_t l = 0; l < L; ++l) acc[l] += a[c + l] * b[c + l];
  for (int64_t l = 0; c + l < d; ++l) acc[l] += a[c + l] * b[c + l];
  for (int64_t w = L / 2; w > 0; w /= 2)
    for (int64_t l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// Attention of a packed batch, one (row, KV head) at a time: the scores of the group's query
// heads against each visible key, softmax over them in position order, then Σ p·v in position
// order, normalized at the end. Nothing is shared between rows.
template <typename T>
void packed_attention_lanes(const AttentionShape& s, const T* q, const T* k_cache, const T* v_cache, T* out) {
  const PackedRows& pr = *s.packed;
  const int64_t n = pr.rows(), d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(d));
#pragma omp parallel
  {
    std::vector<std::pair<int64_t, int64_t>> runs;
    std::vector<T> p, acc(group * d), inv(group);
#pragma omp for schedule(dynamic, 2)
    for (int64_t item = 0; item < n * s.n_kv_heads; ++item) {
      const int64_t g = item / n, r = item % n;  // consecutive items share a KV head (its keys stay cached)
      visible_runs(pr, r, s.window, runs);
      int64_t keys = 0;
      for (const auto& run : runs) keys += run.second;
      p.resize(group * keys);
      const T* K = k_cache + g * s.cap * d;
      const T* V = v_cache + g * s.cap * d;
      const T* qg = q + r * row + g * group * d;  // the group's query heads, consecutive
      int64_t j = 0;
      for (const auto& [slot, len] : runs)
        for (int64_t t = 0; t < len; ++t, ++j) {
          const T* kj = K + (slot + t) * d;
          for (int64_t h = 0; h < group; ++h) p[h * keys + j] = dot_lanes(qg + h * d, kj, d) * scale;
        }
      for (int64_t h = 0; h < group; ++h) {
        T* ph = &p[h * keys];
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t i = 0; i < keys; ++i) mx = std::max(mx, ph[i]);
        T sum = 0;
        for (int64_t i = 0; i < keys; ++i) sum += (ph[i] = std::exp(ph[i] - mx));
        inv[h] = T(1) / sum;
      }
      std::fill(acc.begin(), acc.end(), T(0));
      j = 0;
      for (const auto& [slot, len] : runs)
        for (int64_t t = 0; t < len; ++t, ++j) {
          const T* vj = V + (slot + t) * d;
          for (int64_t h = 0; h < group; ++h) {
            const T pj = p[h * keys + j];
            T* a = &acc[h * d];
            for (int64_t c = 0; c < d; ++c) a[c] += pj * vj[c];
          }
        }
      for (int64_t h = 0; h < group; ++h) {
        T* o = out + r * row + (g * group + h) * d;
        for (int64_t c = 0; c < d; ++c) o[c] = acc[h * d + c] * inv[h];
      }
    }
  }
}

// The same for fp32 rows with head_dim % 8 == 0, in AVX2 registers. Per row, in a fixed order
// that depends only on the row's own keys: scores 8 keys at a time (the last block padded with
// copies of the last key, so every key takes the same path), each a sum of 8 lanes reduced by a
// fixed tree; e^x by a polynomial (Cephes' expf, max relative error ~2e-7) and its sum in 8 lanes
// by key index; Σ p·v sequential over keys for every output value.
namespace avx2 {

inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-88.3762626647949f));
  const __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  // 2^n through the exponent bits; n = -127 (inputs clamped at the bottom) gives 0.
  const __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

inline float sum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

inline float max8(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

// out[0..7] = scale · q·k[i] for the 8 keys k[0..7] (d % 8 == 0).
inline void dot8(const float* q, const float* const* k, int64_t d, float scale, float* out) {
  __m256 a[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm256_setzero_ps();
  for (int64_t c = 0; c < d; c += 8) {
    const __m256 qv = _mm256_loadu_ps(q + c);
    for (int i = 0; i < 8; ++i) a[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k[i] + c), a[i]);
  }
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  const __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
  _mm256_storeu_ps(out, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
}

void packed_attention(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                      float* out) {
  const PackedRows& pr = *s.packed;
  const int64_t n = pr.rows(), d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  constexpr int64_t kKeyBlock = 64;  // keys whose V rows stay in L1 while every head of the group uses them
#pragma omp parallel
  {
    std::vector<std::pair<int64_t, int64_t>> runs;
    std::vector<const float*> krow, vrow;
    std::vector<float> p, acc(group * d), inv(group);
#pragma omp for schedule(dynamic, 2)
    for (int64_t item = 0; item < n * s.n_kv_heads; ++item) {
      const int64_t g = item / n, r = item % n;  // consecutive items share a KV head (its keys stay cached)
      visible_runs(pr, r, s.window, runs);
      krow.clear(), vrow.clear();
      for (const auto& [slot, len] : runs)
        for (int64_t t = 0; t < len; ++t) {
          krow.push_back(k_cache + (g * s.cap + slot + t) * d);
          vrow.push_back(v_cache + (g * s.cap + slot + t) * d);
        }
      const int64_t keys = static_cast<int64_t>(krow.size()), padded = (keys + 7) / 8 * 8;
      krow.resize(padded, krow.back());
      p.resize(group * padded);
      const float* qg = q + r * row + g * group * d;  // the group's query heads, consecutive
      // Scores, 8 keys at a time for every head of the group (the 8 K rows stay in L1).
      for (int64_t j = 0; j < padded; j += 8)
        for (int64_t h = 0; h < group; ++h) dot8(qg + h * d, &krow[j], d, scale, &p[h * padded + j]);
      for (int64_t h = 0; h < group; ++h) {
        float* ph = &p[h * padded];
        for (int64_t j = keys; j < padded; ++j) ph[j] = -std::numeric_limits<float>::infinity();
        __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
        for (int64_t j = 0; j < padded; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(ph + j));
        const __m256 m = _mm256_set1_ps(max8(mx));
        __m256 sum = _mm256_setzero_ps();
        for (int64_t j = 0; j < padded; j += 8) {
          const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ph + j), m));  // padding: e^-inf = 0
          _mm256_storeu_ps(ph + j, e);
          sum = _mm256_add_ps(sum, e);
        }
        inv[h] = 1.0f / sum8(sum);
      }
      // Σ p·v over blocks of keys; each output value's sum runs over the keys in order.
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j0 = 0; j0 < keys; j0 += kKeyBlock) {
        const int64_t j1 = std::min(keys, j0 + kKeyBlock);
        for (int64_t h = 0; h < group; ++h) {
          const float* ph = &p[h * padded];
          float* ah = &acc[h * d];
          int64_t c = 0;
          for (; c + 64 <= d; c += 64) {  // 8 accumulators: 8 independent FMA chains
            __m256 a[8];
            for (int i = 0; i < 8; ++i) a[i] = _mm256_loadu_ps(ah + c + 8 * i);
            for (int64_t j = j0; j < j1; ++j) {
              const __m256 pj = _mm256_set1_ps(ph[j]);
              for (int i = 0; i < 8; ++i) a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vrow[j] + c + 8 * i), a[i]);
            }
            for (int i = 0; i < 8; ++i) _mm256_storeu_ps(ah + c + 8 * i, a[i]);
          }
          for (; c < d; c += 8) {
            __m256 a = _mm256_loadu_ps(ah + c);
            for (int64_t j = j0; j < j1; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(ph[j]), _mm256_loadu_ps(vrow[j] + c), a);
            _mm256_storeu_ps(ah + c, a);
          }
        }
      }
      for (int64_t h = 0; h < group; ++h) {
        float* o = out + r * row + (g * group + h) * d;
        const __m256 iv = _mm256_set1_ps(inv[h]);
        for (int64_t c = 0; c < d; c += 8) _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(&acc[h * d + c]), iv));
      }
    }
  }
}

}  // namespace avx2

}  // namespace

template <typename T>
void packed_attention(const AttentionShape& s, const T* q, const T* k_cache, const T* v_cache, T* out) {
  if constexpr (std::is_same_v<T, float>)
    if (s.head_dim % 8 == 0) return avx2::packed_attention(s, q, k_cache, v_cache, out);
  packed_attention_lanes(s, q, k_cache, v_cache, out);
}
template void packed_attention<float>(const AttentionShape&, const float*, const float*, const float*, float*);
template void packed_attention<double>(const AttentionShape&, const double*, const double*, const double*, double*);

void packed_attention_reference(const AttentionShape& s, const float* q, const float* k_cache, const float* v_cache,
                                float* out) {
  const int64_t d = s.head_dim, row = s.n_heads * d, group = s.n_heads / s.n_kv_heads;
  std::vector<double> p;
  const PackedRows& pr = *s.packed;
  for (int64_t r = 0; r < pr.rows(); ++r) {
    const QuerySegment& seg = pr.segments[pr.row_segment[r]];
    std::vector<std::pair<int64_t, int64_t>> keys;  // (slot, position)
    for (int64_t i = seg.spans_begin; i < seg.spans_end; ++i)
      for (int64_t t = 0; t < pr.spans[i].len; ++t) keys.push_back({pr.spans[i].slot + t, pr.spans[i].pos + t});
    for (int64_t t = 0; t <= r - seg.row; ++t) keys.push_back({seg.slot + t, seg.pos + t});
    if (s.window > 0)
      std::erase_if(keys, [&](const auto& k) { return k.second <= pr.row_pos[r] - s.window; });
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const float* K = k_cache + (h / group) * s.cap * d;
      const float* V = v_cache + (h / group) * s.cap * d;
      const float* qi = q + r * row + h * d;
      p.assign(keys.size(), 0);
      double mx = -1e300, sum = 0;
      for (size_t j = 0; j < keys.size(); ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(qi[c]) * K[keys[j].first * d + c];
        mx = std::max(mx, p[j] = dot / std::sqrt(double(d)));
      }
      for (double& x : p) sum += (x = std::exp(x - mx));
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (size_t j = 0; j < keys.size(); ++j) acc += p[j] / sum * V[keys[j].first * d + c];
        out[r * row + h * d + c] = static_cast<float>(acc);
      }
    }
  }
}

}  // namespace ikv::kernels
