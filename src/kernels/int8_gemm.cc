#include "kernels/int8_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "io/error.h"
#include "kernels/onednn.h"
#include "kernels/packed_matrix.h"

namespace ikv::kernels {

struct Int8MatmulWeights {
  dnnl::memory::desc desc;
  dnnl::memory mem;
};

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// The weight layout oneDNN's s8 matmul wants for a [K, N] operand (format `any`). It does not
// depend on M (checked for M = 1..2048 with the brgemm kernels), so every M's primitive is built
// for the one reordered copy the matrix holds.
dnnl::memory::desc preferred_weights(int64_t K, int64_t N) {
  const dnnl::memory::desc x_md({1, K}, dt::s8, tag::ab), w_md({K, N}, dt::s8, tag::any), y_md({1, N}, dt::s32, tag::ab);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(x_md, w_md, y_md), onednn_engine()).weights_desc();
}

struct Primitive {
  dnnl::matmul matmul;
  size_t scratchpad_bytes = 0;
};

// One primitive per (M, K, N), built once (JIT compilation is far too slow to repeat per call);
// exact M lets oneDNN pick its brgemm kernel, a run-time M would fall back to gemm:jit, which
// repacks the weights on every call (20x slower at M = 1). Scratchpads are the caller's, so
// threads may run the same primitive at once.
const Primitive& primitive(int64_t M, int64_t K, int64_t N, const dnnl::memory::desc& weights) {
  static PrimitiveCache<std::tuple<int64_t, int64_t, int64_t>, Primitive> cache;
  return cache.get({M, K, N}, [&] {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::memory::desc x_md({M, K}, dt::s8, tag::ab), y_md({M, N}, dt::s32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(x_md, weights, y_md), attr, onednn_engine());
    return Primitive{dnnl::matmul(pd), pd.scratchpad_desc().get_size()};
  });
}

}  // namespace

Int8Matrix make_int8_matrix(std::vector<int8_t> q, std::vector<float> scale, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0 || static_cast<int64_t>(q.size()) != rows * cols ||
      static_cast<int64_t>(scale.size()) != rows)
    fail("int8 matrix: ", q.size(), " codes and ", scale.size(), " scales do not make a ", rows, "x", cols, " matrix");
  Int8Matrix m;
  m.rows = rows, m.cols = cols;
  m.q = std::move(q);
  m.scale = std::move(scale);
  auto w = std::make_shared<Int8MatmulWeights>();
  w->desc = preferred_weights(cols, rows);
  w->mem = dnnl::memory(w->desc, onednn_engine());
  // W is [N, K] row-major: as the [K, N] operand its strides are (1, K).
  dnnl::memory plain({{cols, rows}, dt::s8, {1, cols}}, onednn_engine(), m.q.data());
  dnnl::stream s(onednn_engine());
  dnnl::reorder(plain, w->mem).execute(s, plain, w->mem);
  s.wait();
  m.onednn = std::move(w);
  return m;
}

Int8Matrix int8_from_packed(const kernels::PackedMatrix& W) {
  if (!W.sym || W.group != W.cols)
    fail("int8 weights need a symmetric per-channel matrix (", W.rows, "x", W.cols, " has ",
         W.sym ? "sym" : "asym", ", group ", W.group, ")");
  std::vector<int32_t> codes(W.rows * W.cols);
  kernels::unpack_codes(W, codes.data());
  std::vector<int8_t> q(codes.begin(), codes.end());  // signed codes of at most 8 bits
  std::vector<float> scale(W.rows);
  for (int64_t n = 0; n < W.rows; ++n) scale[n] = kernels::scale_value(W, n, 0);
  return make_int8_matrix(std::move(q), std::move(scale), W.rows, W.cols);
}

void quantize_per_token(const float* X, int64_t M, int64_t K, int bits, float clip, int8_t* q, float* s) {
  if (bits < 2 || bits > 8) fail("activation bits ", bits, " are not supported (2..8)");
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1), qmin = -qmax - 1;
#pragma omp parallel for if (M * K > (int64_t(1) << 16))
  for (int64_t m = 0; m < M; ++m) {
    const float* x = X + m * K;
    float mx = 0;
    for (int64_t k = 0; k < K; ++k) mx = std::max(mx, std::abs(x[k]));
    float scale = clip * mx / qmax;
    if (scale == 0) scale = 1;
    s[m] = scale;
    for (int64_t k = 0; k < K; ++k)
      q[m * K + k] = static_cast<int8_t>(std::clamp(std::nearbyint(x[k] / scale), qmin, qmax));
  }
}

void quantize_static(const float* X, int64_t M, int64_t K, int bits, float scale, int8_t* q, float* s) {
  if (bits < 2 || bits > 8) fail("activation bits ", bits, " are not supported (2..8)");
  if (!(scale > 0)) fail("static activation scale ", scale, " must be positive");
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1), qmin = -qmax - 1;
#pragma omp parallel for if (M * K > (int64_t(1) << 16))
  for (int64_t m = 0; m < M; ++m) {
    s[m] = scale;
    for (int64_t k = 0; k < K; ++k)
      q[m * K + k] = static_cast<int8_t>(std::clamp(std::nearbyint(X[m * K + k] / scale), qmin, qmax));
  }
}

void dequantize_per_token(const int8_t* q, const float* s, int64_t M, int64_t K, float* X) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) X[m * K + k] = static_cast<float>(q[m * K + k]) * s[m];
}

void int8_gemm(const int8_t* Xq, const float* sx, int64_t M, const Int8Matrix& W, float* Y) {
  if (M <= 0) return;
  const int64_t K = W.cols, N = W.rows;
  const Primitive& p = primitive(M, K, N, W.onednn->desc);
  std::vector<uint8_t> scratch(std::max<size_t>(p.scratchpad_bytes, 1));
  const dnnl::engine& eng = onednn_engine();
  dnnl::memory x_mem({{M, K}, dt::s8, tag::ab}, eng, const_cast<int8_t*>(Xq));
  // The int32 sums land in Y's own storage (4 bytes each) and are scaled in place below.
  dnnl::memory y_mem({{M, N}, dt::s32, tag::ab}, eng, Y);
  dnnl::memory pad({{static_cast<int64_t>(scratch.size())}, dt::u8, tag::a}, eng, scratch.data());
  dnnl::stream s(eng);
  p.matmul.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, W.onednn->mem}, {DNNL_ARG_DST, y_mem},
                       {DNNL_ARG_SCRATCHPAD, pad}});
  s.wait();
  const float* sw = W.scale.data();
#pragma omp parallel for if (M * N > (int64_t(1) << 15))
  for (int64_t m = 0; m < M; ++m) {
    float* y = Y + m * N;
    for (int64_t n = 0; n < N; ++n) {
      int32_t acc;
      std::memcpy(&acc, &y[n], sizeof acc);
      y[n] = static_cast<float>(acc) * sx[m] * sw[n];
    }
  }
}

void int8_gemm_reference(const int8_t* Xq, const float* sx, int64_t M, const Int8Matrix& W, float* Y) {
  const int64_t K = W.cols, N = W.rows;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float x = static_cast<float>(Xq[m * K + k]) * sx[m];
        const float w = static_cast<float>(W.q[n * K + k]) * W.scale[n];
        acc += static_cast<double>(x) * w;
      }
      Y[m * N + n] = static_cast<float>(acc);
    }
}

}  // namespace ikv::kernels
