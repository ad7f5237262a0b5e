#include "intactkv/backward_ops.h"
#include "kernels/onednn.h"

#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "kernels/gemm.h"

namespace ikv::intactkv::detail {
namespace {

// dX[M,K] = dY[M,N] · W[N,K]: W is the plain row-major [N,K] operand here (strides K, 1), unlike
// kernels::gemm_f32 which reads it transposed. One primitive per (N, K, accumulate) with M a
// run-time dimension (JIT compiling per sample length would cost more than the product);
// accumulate adds into dX through oneDNN's sum post-op.
const dnnl::matmul& input_grad_primitive(int64_t N, int64_t K, bool accumulate) {
  using dt = dnnl::memory::data_type;
  static kernels::PrimitiveCache<std::tuple<int64_t, int64_t, bool>, dnnl::matmul> cache;
  return cache.get({N, K, accumulate}, [&] {
    const auto M = DNNL_RUNTIME_DIM_VAL;
    dnnl::memory::desc dy_md({M, N}, dt::f32, {N, 1});
    dnnl::memory::desc w_md({N, K}, dt::f32, {K, 1});
    dnnl::memory::desc dx_md({M, K}, dt::f32, {K, 1});
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    return dnnl::matmul(
        dnnl::matmul::primitive_desc(dnnl::matmul::desc(dy_md, w_md, dx_md), attr, kernels::onednn_engine()));
  });
}

}  // namespace

void linear(const float* X, int64_t M, int64_t K, const float* W, int64_t N, float* Y) {
  kernels::gemm_f32(X, M, K, W, N, Y);
}

void linear(const double* X, int64_t M, int64_t K, const float* W, int64_t N, double* Y) {
  Eigen::Map<const RowMat<double>> x(X, M, K);
  Eigen::Map<const RowMat<float>> w(W, N, K);
  Eigen::Map<RowMat<double>> y(Y, M, N);
  y.noalias() = x * w.cast<double>().transpose();
}

void linear_input_grad(const float* dY, int64_t M, int64_t N, const float* W, int64_t K, float* dX,
                       bool accumulate) {
  using dt = dnnl::memory::data_type;
  const dnnl::matmul& mm = input_grad_primitive(N, K, accumulate);
  dnnl::memory dy_mem({{M, N}, dt::f32, {N, 1}}, kernels::onednn_engine(), const_cast<float*>(dY));
  dnnl::memory w_mem({{N, K}, dt::f32, {K, 1}}, kernels::onednn_engine(), const_cast<float*>(W));
  dnnl::memory dx_mem({{M, K}, dt::f32, {K, 1}}, kernels::onednn_engine(), dX);
  dnnl::stream s(kernels::onednn_engine());
  mm.execute(s, {{DNNL_ARG_SRC, dy_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, dx_mem}});
  s.wait();
}

void linear_input_grad(const double* dY, int64_t M, int64_t N, const float* W, int64_t K, double* dX,
                       bool accumulate) {
  Eigen::Map<const RowMat<double>> dy(dY, M, N);
  Eigen::Map<const RowMat<float>> w(W, N, K);
  Eigen::Map<RowMat<double>> dx(dX, M, K);
  if (accumulate)
    dx.noalias() += dy * w.cast<double>();
  else
    dx.noalias() = dy * w.cast<double>();
}

}  // namespace ikv::intactkv::detail
