// packed_matmul dispatch, the portable decoder, the panel GEMM for large M, and the reference twin.
#include "kernels/packed_matmul.h"
#include "kernels/onednn.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <vector>

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/gemm.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels {
namespace {

using kernels::CodeLayout;
using kernels::CodeWord;
using kernels::PackedMatrix;

// Row n of W dequantized into out[0, cols). Any bits and group size; the AVX2 build vectorizes
// the lane loop where it can.
void dequantize_row_portable(const PackedMatrix& W, const CodeLayout& lay, int64_t n, float* out) {
  const CodeWord* row = W.codes.data() + n * lay.row_words;
  const int bits = W.bits;
  const uint32_t mask = (1u << bits) - 1;
  const int64_t block_codes = lay.block_codes();
  for (int64_t k0 = 0; k0 < W.cols; k0 += 16) {
    const CodeWord* block = row + k0 / block_codes * lay.block_words;
    const int bit = static_cast<int>(k0 % block_codes / 16) * bits, d = bit / 32, off = bit % 32;
    uint32_t q[16];
    for (int i = 0; i < 16; ++i) {
      uint64_t v = block[d].lane[i] >> off;
      if (off + bits > 32) v |= static_cast<uint64_t>(block[d + 1].lane[i]) << (32 - off);
      q[i] = static_cast<uint32_t>(v) & mask;
    }
    const int count = static_cast<int>(std::min<int64_t>(16, W.cols - k0));
    // The group's zero point and scale once per 16 codes when they share a group (any group size
    // that is a multiple of 16): decoding them per code made this path several times slower (an
    // 8-bit lm_head, which only this path dequantizes, ran at half the FP head's speed).
    if (k0 / W.group == (k0 + count - 1) / W.group) {
      const int64_t g = k0 / W.group;
      const int zero = kernels::zero_point(W, n, g);
      const float scale = kernels::scale_value(W, n, g);
      for (int i = 0; i < count; ++i) out[k0 + i] = static_cast<float>(static_cast<int>(q[i]) - zero) * scale;
      continue;
    }
    for (int i = 0; i < count; ++i) {
      const int64_t g = (k0 + i) / W.group;
      out[k0 + i] = static_cast<float>(static_cast<int>(q[i]) - kernels::zero_point(W, n, g)) *
                    kernels::scale_value(W, n, g);
    }
  }
}

// Rows [n0, n1) dequantized to out[(n - n0) * ld + k] by the chosen decoder.
void dequantize_rows(const PackedMatrix& W, int64_t n0, int64_t n1, float* out, int64_t ld,
                     bool avx512) {
  if (avx512) return detail::dequantize_rows_avx512(W, n0, n1, out, ld);
  const CodeLayout lay = kernels::code_layout(W.bits, W.cols);
  for (int64_t n = n0; n < n1; ++n) dequantize_row_portable(W, lay, n, out + (n - n0) * ld);
}

// Small M without AVX-512: dequantize a row, dot it with every row of X.
void gemv_portable(const PackedMatrix& W, const float* X, int64_t M, float* Y) {
  const CodeLayout lay = kernels::code_layout(W.bits, W.cols);
  const int64_t K = W.cols, N = W.rows;
#pragma omp parallel
  {
    std::vector<float> w(K);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      dequantize_row_portable(W, lay, n, w.data());
      for (int64_t m = 0; m < M; ++m) {
        const float* x = X + m * K;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; ++k) acc += x[k] * w[k];
        Y[m * N + n] = acc;
      }
    }
  }
}

// ---- large M: dequantized panels through a oneDNN fp32 matmul ----------------------------------

// Reads oneDNN's weight layout for a [K, np] operand into a PanelLayout, if it is one.
bool parse_panel_layout(const dnnl::memory::desc& md, detail::PanelLayout* lay) {
  const dnnl_blocking_desc_t& b = md.data.format_desc.blocking;
  if (md.data.format_kind != dnnl_blocked || md.data.ndims != 2) return false;
  if (b.inner_nblks == 0) {
    *lay = {1, 1, b.strides[0], b.strides[1]};
    return true;
  }
  // Two inner blocks, K's outside N's: [k / kb][n / nb] outer (any strides), [kb][nb] inner.
  if (b.inner_nblks != 2 || b.inner_idxs[0] != 0 || b.inner_idxs[1] != 1) return false;
  *lay = {b.inner_blks[0], b.inner_blks[1], b.strides[0], b.strides[1]};
  return true;
}

// Yp[M, np] = X[M, K] · Pᵀ for a dequantized panel P of np rows of W. The panel is written
// straight into the weight layout oneDNN's matmul prefers (BA16a64b for its AVX-512 brgemm), so
// the matmul runs at the speed of the prepacked whole-matrix FP32 matmul: handing it the plain
// [np, K] rows instead costs ~10% (it repacks every call), and a strided destination (a slice of
// Y) makes it fall back to the slower gemm:jit. One primitive per shape, built once.
struct PanelMatmul {
  dnnl::matmul matmul;
  dnnl::memory::desc weights, scratchpad;
  detail::PanelLayout layout;
  size_t floats = 0;  // panel size including oneDNN's padding
};

const PanelMatmul& panel_matmul(int64_t M, int64_t K, int64_t np) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  static PrimitiveCache<std::tuple<int64_t, int64_t, int64_t>, PanelMatmul> cache;
  return cache.get({M, K, np}, [&] {
    const dnnl::memory::desc x_md({M, K}, dt::f32, tag::ab), y_md({M, np}, dt::f32, tag::ab);
    // Threads run the same primitive at once: each passes its own scratchpad (the library-managed
    // one is shared by all executions of a primitive and would be raced on).
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(x_md, dnnl::memory::desc({K, np}, dt::f32, tag::any), y_md), attr, onednn_engine());
    PanelMatmul p;
    if (!parse_panel_layout(pd.weights_desc(), &p.layout)) {  // an unfamiliar layout: plain rows
      pd = dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(x_md, dnnl::memory::desc({K, np}, dt::f32, tag::ba), y_md), attr, onednn_engine());
      parse_panel_layout(pd.weights_desc(), &p.layout);
    }
    p.matmul = dnnl::matmul(pd);
    p.weights = pd.weights_desc();
    p.scratchpad = pd.scratchpad_desc();
    p.floats = p.weights.get_size() / sizeof(float);
    return p;
  });
}

// Rows [n0, n0 + rows) of W into the panel layout, padding zeroed.
void dequantize_panel(const PackedMatrix& W, int64_t n0, int64_t rows, const PanelMatmul& pm,
                      float* panel, float* row_buf, bool avx512) {
  const detail::PanelLayout& lay = pm.layout;
  if (avx512 && lay.kb == 16 && lay.nb % 16 == 0)
    return detail::dequantize_panel_avx512(W, n0, rows, lay, panel);
  std::fill(panel, panel + pm.floats, 0.0f);
  for (int64_t n = 0; n < rows; ++n) {
    dequantize_rows(W, n0 + n, n0 + n + 1, row_buf, W.cols, avx512);
    for (int64_t k = 0; k < W.cols; ++k) panel[lay.offset(k, n)] = row_buf[k];
  }
}

// Rows per panel: a multiple of oneDNN's 64-wide weight blocks; 64 rows are 1 MB at K = 4096.
int64_t panel_rows(int64_t N) { return std::min<int64_t>(64, N); }

// A 64-byte aligned float buffer that only grows. One per thread per use, kept across calls:
// allocating the ~1 MB panel afresh every call costs a page fault per 4 KB.
class ScratchBuffer {
 public:
  float* get(size_t floats) {
    if (floats > size_) {
      data_.reset(static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64)));
      if (!data_) fail("packed_matmul: out of memory for a ", floats * sizeof(float), "-byte buffer");
      size_ = floats;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

// Each thread takes whole panels: dequantize np rows of W, a single-threaded oneDNN matmul on
// them (oneDNN runs sequentially inside an OpenMP region), copy the [M, np] result into Y. There
// is no barrier between panels, so a core the OS takes away for a while delays only its own.
void panel_gemm(const PackedMatrix& W, const float* X, int64_t M, float* Y, bool avx512) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  const int64_t K = W.cols, N = W.rows, np = panel_rows(N);
  const int64_t panels = (N + np - 1) / np;
  const dnnl::memory x_mem({{M, K}, dt::f32, tag::ab}, onednn_engine(), const_cast<float*>(X));
  const PanelMatmul& full = panel_matmul(M, K, np);  // built outside the parallel region
  const PanelMatmul* tail = N % np ? &panel_matmul(M, K, N % np) : nullptr;
  const size_t scratch_bytes = std::max(full.scratchpad.get_size(), tail ? tail->scratchpad.get_size() : 0);
#pragma omp parallel
  {
    thread_local ScratchBuffer panel_buf, yp_buf, row_buf, scratch_buf;
    float* panel = panel_buf.get(std::max(full.floats, tail ? tail->floats : 0));
    float* yp = yp_buf.get(M * np);
    float* row = row_buf.get(K);
    float* scratch = scratch_buf.get(scratch_bytes / sizeof(float) + 1);
    const dnnl::memory scratch_full(full.scratchpad, onednn_engine(), scratch);
    const dnnl::memory scratch_tail = tail ? dnnl::memory(tail->scratchpad, onednn_engine(), scratch) : scratch_full;
    dnnl::stream stream(onednn_engine());
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < panels; ++i) {
      const int64_t n0 = i * np, rows = std::min(np, N - n0);
      const PanelMatmul& pm = rows == np ? full : *tail;
      dequantize_panel(W, n0, rows, pm, panel, row, avx512);
      const dnnl::memory p_mem(pm.weights, onednn_engine(), panel);
      const dnnl::memory y_mem({{M, rows}, dt::f32, tag::ab}, onednn_engine(), yp);
      pm.matmul.execute(stream, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, p_mem}, {DNNL_ARG_DST, y_mem},
                                 {DNNL_ARG_SCRATCHPAD, rows == np ? scratch_full : scratch_tail}});
      stream.wait();
      for (int64_t m = 0; m < M; ++m) std::copy_n(yp + m * rows, rows, Y + m * N + n0);
    }
  }
}

}  // namespace

// quantize_per_token's arithmetic at 8 bits, clip 1, written so that GCC vectorizes it (a call per
// block costs more than the GEMV's decode at M = 1); the tests check the two agree bit for bit.
void quantize_q8(const float* X, int64_t M, int64_t K, int8_t* q, float* s) {
  const int64_t blocks = (K + kQ8Block - 1) / kQ8Block;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = b * kQ8Block, n = std::min(kQ8Block, K - k0);
      const float* x = X + m * K + k0;
      float lane[8] = {};  // eight independent running maxima: one would wait on each max's latency
      int64_t k = 0;
      for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; ++j) lane[j] = std::max(lane[j], std::fabs(x[k + j]));
      for (; k < n; ++k) lane[0] = std::max(lane[0], std::fabs(x[k]));
      const float mx = *std::max_element(lane, lane + 8);
      const float scale = mx == 0 ? 1.0f : mx / 127.0f;
      s[m * blocks + b] = scale;
      int8_t* qb = q + (m * blocks + b) * kQ8Block;
      for (int64_t i = 0; i < n; ++i) qb[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / scale), -128.0f, 127.0f));
      std::fill(qb + n, qb + kQ8Block, int8_t{0});
    }
}

std::vector<float> rounded_activations(const float* X, int64_t M, int64_t K, Activations act) {
  std::vector<float> r(M * K);
  if (act == Activations::kFp32) {
    std::copy_n(X, M * K, r.begin());
  } else if (act == Activations::kBf16) {
#pragma omp parallel for simd if (M * K > (1 << 16))
    for (int64_t i = 0; i < M * K; ++i) r[i] = io::bf16_to_fp32(io::fp32_to_bf16(X[i]));
  } else {
    const int64_t blocks = (K + kQ8Block - 1) / kQ8Block;
    std::vector<int8_t> q(M * blocks * kQ8Block);
    std::vector<float> s(M * blocks);
    quantize_q8(X, M, K, q.data(), s.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k)
        r[m * K + k] = static_cast<float>(q[(m * blocks) * kQ8Block + k]) * s[m * blocks + k / kQ8Block];
  }
  return r;
}

void packed_matmul(const PackedMatrix& W, const float* X, int64_t M, float* Y, Isa isa, Activations act) {
  if (M <= 0 || W.rows <= 0) return;
  const bool avx512 = resolve_isa(isa) == Isa::kAvx512;
  std::vector<float> xr;
  if (act != Activations::kFp32) {
    if (avx512 && M < kPanelMinRows && act == Activations::kBf16 && detail::avx512_bf16_gemv_covers(W))
      return detail::packed_gemv_bf16_avx512(W, X, M, Y);
    xr = rounded_activations(X, M, W.cols, act);  // then the fp32 kernels compute bf16(X)·Wᵀ or q8(X)·Wᵀ
    X = xr.data();
  }
  const bool decodes = avx512 && detail::avx512_decodes(W);
  if (M >= kPanelMinRows) return panel_gemm(W, X, M, Y, decodes);
  if (decodes) return detail::packed_gemv_avx512(W, X, M, Y);
  gemv_portable(W, X, M, Y);
}

void packed_matmul_reference(const PackedMatrix& W, const float* X, int64_t M, float* Y, Activations act) {
  const int64_t K = W.cols, N = W.rows;
  std::vector<float> xr;
  if (act != Activations::kFp32) {
    xr = rounded_activations(X, M, K, act);
    X = xr.data();
  }
  std::vector<float> w(N * K);
  dequantize(W, w.data());
  gemm_reference(X, M, K, w.data(), N, Y);
}

}  // namespace ikv::kernels
