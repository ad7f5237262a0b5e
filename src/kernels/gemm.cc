#include "kernels/gemm.h"

#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/onednn.h"

namespace ikv::kernels {
namespace {

// Matmul primitives are built once per shape: building JIT-compiles code, far too slow to repeat
// per call. Large batches (prefill, perplexity windows: a few recurring lengths) get a primitive
// for their exact M, for which oneDNN picks its fastest (brgemm) kernel; small batches (decode,
// loglikelihood continuations of every length) share one primitive per (K, N) with M a run-time
// dimension.
constexpr int64_t kExactMinRows = 128;

// A matmul primitive and its scratchpad. Primitives run from several threads at once (one panel
// each, gemm_f32_half) take their scratchpad from the caller (scratchpad_mode::user): a primitive's
// own would be shared by the concurrent calls.
struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc scratchpad;
};

const Matmul& matmul_primitive(int64_t M, int64_t K, int64_t N, dnnl::memory::data_type wt, bool user_scratchpad) {
  using dt = dnnl::memory::data_type;
  static PrimitiveCache<std::tuple<int64_t, int64_t, int64_t, int, bool>, Matmul> cache;
  const int64_t m = M >= kExactMinRows ? M : DNNL_RUNTIME_DIM_VAL;
  return cache.get({m, K, N, static_cast<int>(wt), user_scratchpad}, [&] {
    dnnl::memory::desc x_md({m, K}, wt, {K, 1});
    // W is stored [N, K] row-major; as the [K, N] operand its strides are (1, K).
    dnnl::memory::desc w_md({K, N}, wt, {1, K});
    dnnl::memory::desc y_md({m, N}, dt::f32, {N, 1});
    dnnl::primitive_attr attr;
    if (user_scratchpad) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(x_md, w_md, y_md), attr, onednn_engine());
    return Matmul{dnnl::matmul(pd), pd.scratchpad_desc()};
  });
}

// A float buffer per thread that only grows: a panel allocated afresh per call would cost a page
// fault per 4 KB.
float* thread_buffer(int which, size_t floats) {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float[], Free> bufs[3];
  thread_local size_t sizes[3] = {0, 0, 0};
  if (floats > sizes[which]) {
    bufs[which].reset(static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64)));
    if (!bufs[which]) fail("gemm: out of memory for a ", floats * sizeof(float), "-byte buffer");
    sizes[which] = floats;
  }
  return bufs[which].get();
}

// Y = X · Wᵀ on the thread's stream; scratch is the caller's scratchpad for a user-scratchpad primitive.
// Inside a parallel region (callers that run whole blocks of rows per thread) the primitive, cached
// and shared, may be running on another thread at the same time: it then always takes a scratchpad
// of this thread's, since its own would be written by both.
void run_matmul(const void* X, int64_t M, int64_t K, const void* W, int64_t N, float* Y,
                dnnl::memory::data_type wt, void* scratch = nullptr) {
  if (!scratch && omp_in_parallel())
    scratch = thread_buffer(2, matmul_primitive(M, K, N, wt, true).scratchpad.get_size() / sizeof(float) + 1);
  const Matmul& mm = matmul_primitive(M, K, N, wt, scratch != nullptr);
  dnnl::memory x_mem({{M, K}, wt, {K, 1}}, onednn_engine(), const_cast<void*>(X));
  dnnl::memory w_mem({{K, N}, wt, {1, K}}, onednn_engine(), const_cast<void*>(W));
  dnnl::memory y_mem({{M, N}, dnnl::memory::data_type::f32, {N, 1}}, onednn_engine(), Y);
  dnnl::stream s(onednn_engine());
  std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem}};
  if (scratch) args.insert({DNNL_ARG_SCRATCHPAD, dnnl::memory(mm.scratchpad, onednn_engine(), scratch)});
  mm.primitive.execute(s, args);
  s.wait();
}

// Rows of W per panel. Below kExactMinRows rows of X (oneDNN's small-M GEMM) 64, with which the
// panels' sums at two threads are those of one call on the whole matrix; above (brgemm, whose sums
// do not depend on the split) 128, ~10% faster at M = 128.
int64_t panel_rows(int64_t M) { return M >= kExactMinRows ? 128 : 64; }

// Y = X · Wᵀ over panels of panel_rows(M) rows of W: each thread takes whole panels (no barrier
// between them) and runs a single-threaded oneDNN matmul on each (oneDNN runs sequentially inside
// a parallel region), the panel's rows handed out by panel(n0, rows, buffer). The output is written
// dense and copied into Y's columns: with a strided output oneDNN picks other kernels.
//
// Why panels for fp32 weights too: oneDNN's sums for an output column depend on how it splits the
// whole problem among threads (its small-M GEMM sums in another order at one thread than at two,
// for the same column), so a column's value is only reproducible by making the same calls. gemm_f32
// and gemm_f32_half make the same calls on the same panel values, so fp32 compute on a 16-bit
// weight is fp32 compute on its upcast copy at any thread count. (At two threads the panels' sums
// are also those of one oneDNN call on the whole matrix, as gemm_f32 was before panels.)
template <typename PanelOf>
void panel_gemm(const float* X, int64_t M, int64_t K, int64_t N, float* Y, PanelOf panel) {
  using dt = dnnl::memory::data_type;
  const int64_t np = std::min(panel_rows(M), N), panels = (N + np - 1) / np;
  if (panels == 1) return run_matmul(X, M, K, panel(0, N), N, Y, dt::f32);  // one call, every thread
  // Built outside the parallel region.
  size_t scratch_bytes = matmul_primitive(M, K, np, dt::f32, true).scratchpad.get_size();
  if (N % np) scratch_bytes = std::max(scratch_bytes, matmul_primitive(M, K, N % np, dt::f32, true).scratchpad.get_size());
#pragma omp parallel
  {
    float* y = thread_buffer(1, static_cast<size_t>(M * np));
    float* scratch = thread_buffer(2, scratch_bytes / sizeof(float) + 1);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < panels; ++i) {
      const int64_t n0 = i * np, rows = std::min(np, N - n0);
      run_matmul(X, M, K, panel(n0, rows), rows, y, dt::f32, scratch);
      for (int64_t m = 0; m < M; ++m) std::copy_n(y + m * rows, rows, Y + m * N + n0);
    }
  }
}

}  // namespace

dnnl::engine& onednn_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

void gemm_f32(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y) {
  if (M <= 0 || N <= 0) return;
  // One row of X: oneDNN's GEMV sums each column alike however the matrix is split (the tests
  // check it against gemm_f32_half's panels), and one call on the whole matrix is faster.
  if (M == 1) return run_matmul(X, M, K, W, N, Y, dnnl::memory::data_type::f32);
  panel_gemm(X, M, K, N, Y, [&](int64_t n0, int64_t) { return W + n0 * K; });
}

void gemm_bf16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y) {
  std::vector<uint16_t> xb(static_cast<size_t>(M * K));
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = io::fp32_to_bf16(X[i]);
  run_matmul(xb.data(), M, K, W, N, Y, dnnl::memory::data_type::bf16);
}

void gemm_f32_half(const float* X, int64_t M, int64_t K, const uint16_t* W, Half type, int64_t N, float* Y) {
  if (M <= 0 || N <= 0) return;
  panel_gemm(X, M, K, N, Y, [&](int64_t n0, int64_t rows) {
    float* w = thread_buffer(0, static_cast<size_t>(rows * K));
    half_to_f32(type, W + n0 * K, rows * K, w);
    return static_cast<const float*>(w);
  });
}

void gemm_reference(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(X[m * K + k]) * W[n * K + k];
      Y[m * N + n] = static_cast<float>(acc);
    }
}

}  // namespace ikv::kernels
