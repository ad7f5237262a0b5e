// GPTQ for one matrix: the inverse-Hessian factor (gptq_prepare) and the blocked column sweep
// (gptq_quantize). The numerical choices are listed in gptq.h.
#include "quant/gptq.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "io/error.h"
#include "quant/rtn.h"

namespace ikv::quant {
namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Inverts the lower triangle of L in place (the strict upper part is neither read nor written):
// [A 0; B C]⁻¹ = [A⁻¹ 0; −C⁻¹·B·A⁻¹ C⁻¹], recursively, so the bulk of the n³/3 flops are large
// triangular-times-dense products. (A triangular solve against the identity costs 3× as much.)
void invert_lower(Eigen::Ref<Eigen::MatrixXd> L) {
  const Eigen::Index n = L.rows();
  if (n <= 64) {
    Eigen::MatrixXd inv = Eigen::MatrixXd::Identity(n, n);
    L.triangularView<Eigen::Lower>().solveInPlace(inv);
    L.triangularView<Eigen::Lower>() = inv;
    return;
  }
  const Eigen::Index h = n / 2;
  invert_lower(L.topLeftCorner(h, h));
  invert_lower(L.bottomRightCorner(n - h, n - h));
  const Eigen::MatrixXd t = L.bottomLeftCorner(n - h, h) * L.topLeftCorner(h, h).triangularView<Eigen::Lower>();
  L.bottomLeftCorner(n - h, h).noalias() = -(L.bottomRightCorner(n - h, n - h).triangularView<Eigen::Lower>() * t);
}

// RTN's group params (quant/rtn.h) with the scale rounded to fp16 before the zero point is chosen,
// so codes, zero point and the error fed back all use the scale the packed matrix stores. False
// when the rounded scale is not a positive finite fp16 value.
bool fp16_group_params(const float* w, int64_t n, int bits, bool sym, GroupParams& p) {
  p = rtn_group_params(w, n, bits, sym);
  p.scale = kernels::round_scale_to_fp16(p.scale);
  if (!(std::isfinite(p.scale) && p.scale > 0)) return false;
  if (!sym) {
    const float lo = *std::min_element(w, w + n);
    const float qmax = static_cast<float>((1 << bits) - 1);
    p.zero = static_cast<int>(std::clamp(-std::nearbyint(lo / p.scale), 0.0f, qmax));
  }
  return true;
}

}  // namespace

GptqHessian gptq_prepare(const std::vector<double>& H, int64_t cols, const GptqOptions& opt, const std::string& what) {
  if (cols <= 0 || static_cast<int64_t>(H.size()) != cols * cols)
    fail(what, ": Hessian has ", H.size(), " entries, expected ", cols, " x ", cols);
  if (!(opt.damp >= 0 && std::isfinite(opt.damp))) fail(what, ": GPTQ dampening ", opt.damp, " must be >= 0");
  for (size_t i = 0; i < H.size(); ++i)
    if (!std::isfinite(H[i])) fail(what, ": non-finite Hessian entry ", H[i], " at (", i / cols, ", ", i % cols, ")");
  GptqHessian h;
  h.cols = cols;
  h.dead.assign(cols, 0);
  // H is symmetric, so reading its row-major data column-major gives the same matrix.
  Eigen::MatrixXd A = Eigen::Map<const Eigen::MatrixXd>(H.data(), cols, cols);
  for (int64_t c = 0; c < cols; ++c)
    if (A(c, c) == 0) h.dead[c] = 1, A(c, c) = 1;  // never-active input: its column is zeroed below
  if (opt.act_order) {
    h.perm.resize(cols);
    std::iota(h.perm.begin(), h.perm.end(), 0);
    std::stable_sort(h.perm.begin(), h.perm.end(), [&](int32_t a, int32_t b) { return A(a, a) > A(b, b); });
    A = A(h.perm, h.perm).eval();
  }
  A.diagonal().array() += opt.damp * A.diagonal().mean();
  // With J the order reversal, J·A·J = M·Mᵀ (M lower) gives A⁻¹ = (J·M⁻¹·J)ᵀ(J·M⁻¹·J), and J·M⁻¹·J is
  // upper with a positive diagonal: the upper Cholesky factor of A⁻¹ (it is unique).
  A.reverseInPlace();
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(A);
  if (llt.info() != Eigen::Success)
    fail(what, ": the input Hessian (", cols, " channels) is not positive definite after dampening ", opt.damp,
         " (raise the dampening or use more calibration tokens)");
  invert_lower(A);
  h.u.assign(static_cast<size_t>(cols * cols), 0.0);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = i; j < cols; ++j) h.u[i * cols + j] = A(cols - 1 - i, cols - 1 - j);
  return h;
}

GptqMatrix gptq_quantize(const float* W, int64_t rows, int64_t cols, const GptqHessian& h, const GptqOptions& opt,
                         const std::string& what) {
  const kernels::QuantSpec& spec = opt.spec;
  kernels::validate_spec(spec, cols, what);
  if (rows <= 0) fail(what, ": row count ", rows, " must be positive");
  if (h.cols != cols) fail(what, ": the Hessian is for ", h.cols, " input channels, the weight has ", cols);
  if (opt.block <= 0) fail(what, ": GPTQ block size ", opt.block, " must be positive");
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(W[i])) fail(what, ": non-finite weight ", W[i], " at row ", i / cols, " col ", i % cols);
  const int bits = spec.bits;
  const bool sym = spec.sym;
  const int64_t group = spec.group == -1 ? cols : spec.group, groups = cols / group;
  const int64_t B = std::min(opt.block, cols);

  // The working copy in quantization order, dead inputs zeroed, updated in place as columns go.
  RowMatrix Wd(rows, cols);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t c = h.perm.empty() ? j : h.perm[j];
      Wd(r, j) = h.dead[c] ? 0.0 : static_cast<double>(W[r * cols + c]);
    }
  const Eigen::Map<const RowMatrix> U(h.u.data(), cols, cols);
  std::vector<int32_t> q(static_cast<size_t>(rows * cols));
  std::vector<float> scales(static_cast<size_t>(rows * groups));
  std::vector<int32_t> zeros(sym ? 0 : static_cast<size_t>(rows * groups));
  RowMatrix err(rows, B);  // the block's scaled errors (w − ŵ) / U_jj, row by row
  bool bad_scale = false;

  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), n = i2 - i1;
    // Rows are independent problems sharing U: each thread sweeps whole rows of the block, whose
    // 128 columns stay in L1 while the rank-1 updates run.
#pragma omp parallel reduction(|| : bad_scale)
    {
      std::vector<float> vals(group);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        double* w = &Wd(r, 0);
        double* e = &err(r, 0);
        GroupParams p;
        if (i1 % group != 0) {  // the block continues a group begun in an earlier block
          p.scale = scales[r * groups + i1 / group];
          p.zero = sym ? 0 : zeros[r * groups + i1 / group];
        }
        for (int64_t i = 0; i < n; ++i) {
          const int64_t j = i1 + i;
          if (j % group == 0) {
            // The group's current weights: columns past the block still lack this block's lazy
            // update, so apply it here for them (only when the group straddles the block).
            const int64_t end = j + group, inside = std::min(end, i2);
            for (int64_t c = j; c < inside; ++c) vals[c - j] = static_cast<float>(w[c]);
            for (int64_t c = inside; c < end; ++c) {
              double v = w[c];
              for (int64_t k = 0; k < i; ++k) v -= e[k] * U(i1 + k, c);
              vals[c - j] = static_cast<float>(v);
            }
            if (!fp16_group_params(vals.data(), group, bits, sym, p)) bad_scale = true;
            scales[r * groups + j / group] = p.scale;
            if (!sym) zeros[r * groups + j / group] = p.zero;
          }
          const int code = rtn_code(static_cast<float>(w[j]), p, bits, sym);
          q[r * cols + j] = code;
          const float deq = static_cast<float>(code - p.zero) * p.scale;  // exactly dequantize()'s value
          const double ej = (w[j] - deq) / U(j, j);
          e[i] = ej;
          const double* u = h.u.data() + j * cols;
          for (int64_t c = j + 1; c < i2; ++c) w[c] -= ej * u[c];
        }
      }
    }
    if (bad_scale) break;
    // Lazy batch: the block's errors reach the remaining columns in one GEMM.
    if (i2 < cols) Wd.rightCols(cols - i2).noalias() -= err.leftCols(n) * U.block(i1, i2, n, cols - i2);
  }
  if (bad_scale) fail(what, ": a group's scale is not a positive fp16 value (weights too large to pack)");
  return {kernels::pack_codes(q.data(), scales.data(), sym ? nullptr : zeros.data(), rows, cols, spec, what), h.perm};
}

GptqMatrix gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<double>& H,
                         const GptqOptions& opt, const std::string& what) {
  return gptq_quantize(W, rows, cols, gptq_prepare(H, cols, opt, what), opt, what);
}

}  // namespace ikv::quant
