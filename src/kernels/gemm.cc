#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.hpp>
#include <algorithm>
#include <tuple>
#include <vector>

#include "io/dtype.h"
#include "kernels/onednn.h"

namespace ikv::kernels {
namespace {

// Matmul primitives are built once per shape: building JIT-compiles code, far too slow to repeat
// per call. Large batches (prefill, perplexity windows: a few recurring lengths) get a primitive
// for their exact M, for which oneDNN picks its fastest (brgemm) kernel; small batches (decode,
// loglikelihood continuations of every length) share one primitive per (K, N) with M a run-time
// dimension.
constexpr int64_t kExactMinRows = 128;

struct Matmul {
  dnnl::matmul matmul;
  dnnl::memory::desc scratchpad;
};

const Matmul& matmul_primitive(int64_t M, int64_t K, int64_t N, dnnl::memory::data_type wt) {
  using dt = dnnl::memory::data_type;
  static PrimitiveCache<std::tuple<int64_t, int64_t, int64_t, int>, Matmul> cache;
  const int64_t m = M >= kExactMinRows ? M : DNNL_RUNTIME_DIM_VAL;
  return cache.get({m, K, N, static_cast<int>(wt)}, [&] {
    dnnl::memory::desc x_md({m, K}, wt, {K, 1});
    // W is stored [N, K] row-major; as the [K, N] operand its strides are (1, K).
    dnnl::memory::desc w_md({K, N}, wt, {1, K});
    dnnl::memory::desc y_md({m, N}, dt::f32, {N, 1});
    // Threads may run the same primitive at once (the packed forward gives each thread whole row
    // blocks): each passes its own scratchpad, as the library-managed one is shared.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(x_md, w_md, y_md), attr, onednn_engine());
    return Matmul{dnnl::matmul(pd), pd.scratchpad_desc()};
  });
}

void run_matmul(const void* X, int64_t M, int64_t K, const void* W, int64_t N, float* Y,
                dnnl::memory::data_type wt) {
  const Matmul& mm = matmul_primitive(M, K, N, wt);
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(std::max<size_t>(scratch.size(), std::max<size_t>(mm.scratchpad.get_size(), 1)));
  dnnl::memory x_mem({{M, K}, wt, {K, 1}}, onednn_engine(), const_cast<void*>(X));
  dnnl::memory w_mem({{K, N}, wt, {1, K}}, onednn_engine(), const_cast<void*>(W));
  dnnl::memory y_mem({{M, N}, dnnl::memory::data_type::f32, {N, 1}}, onednn_engine(), Y);
  dnnl::memory s_mem(mm.scratchpad, onednn_engine(), scratch.data());
  dnnl::stream s(onednn_engine());
  mm.matmul.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, y_mem},
                        {DNNL_ARG_SCRATCHPAD, s_mem}});
  s.wait();
}

}  // namespace

dnnl::engine& onednn_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

void gemm_f32(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y) {
  run_matmul(X, M, K, W, N, Y, dnnl::memory::data_type::f32);
}

void gemm_bf16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, float* Y) {
  std::vector<uint16_t> xb(static_cast<size_t>(M * K));
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = io::fp32_to_bf16(X[i]);
  run_matmul(xb.data(), M, K, W, N, Y, dnnl::memory::data_type::bf16);
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
