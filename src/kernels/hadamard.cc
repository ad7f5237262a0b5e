#include "kernels/hadamard.h"

#include <Eigen/Core>
#include <Eigen/QR>
#include <cmath>

#include "io/error.h"

namespace ikv::kernels {
namespace {

constexpr int64_t kMaxPaleyBlock = 256;

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Paley I: the ±1 Hadamard matrix of order q + 1 for a prime q ≡ 3 (mod 4), row-major.
std::vector<int> paley_hadamard(int64_t q) {
  std::vector<int> chi(q, -1);  // Legendre symbol χ(a) for a = 0..q-1: 0, +1 on squares, −1 else
  chi[0] = 0;
  for (int64_t a = 1; a < q; ++a) chi[(a * a) % q] = 1;
  const int64_t n = q + 1;
  std::vector<int> h(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int c;  // the skew conference matrix C = [[0, 1ᵀ], [−1, Q]], Q_ij = χ(j − i)
      if (i == 0) c = j == 0 ? 0 : 1;
      else if (j == 0) c = -1;
      else c = chi[((j - i) % q + q) % q];
      h[i * n + j] = (i == j ? 1 : 0) + c;  // H = I + C
    }
  return h;
}

// splitmix64: a tiny, platform-independent generator (std:: distributions are not portable).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  double gaussian() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform()); }
};

// Haar-random orthogonal m×m: Q of the QR decomposition of a Gaussian matrix, each column's sign
// made that of R's diagonal (without it the distribution is not uniform).
std::vector<float> random_orthogonal(int64_t m, uint64_t seed) {
  SplitMix rng{seed ^ (0x51ED2700ull + static_cast<uint64_t>(m))};
  Eigen::MatrixXd g(m, m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) g(i, j) = rng.gaussian();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ();
  const Eigen::MatrixXd r = qr.matrixQR().triangularView<Eigen::Upper>();
  for (int64_t j = 0; j < m; ++j)
    if (r(j, j) < 0) q.col(j) *= -1.0;
  std::vector<float> out(m * m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) out[i * m + j] = static_cast<float>(q(i, j));
  return out;
}

// In-place unnormalized Walsh–Hadamard transform of x[0..p): x ← x · S_p.
template <typename T>
void fwht(T* x, int64_t p) {
  for (int64_t h = 1; h < p; h <<= 1)
    for (int64_t i = 0; i < p; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const T a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
}

// One row: x ← x · T (inverse: x ← x · Tᵀ). tmp has n elements.
template <typename T>
void transform_row(const HadamardTransform& h, T* x, T* tmp, bool inverse) {
  const int64_t n = h.n, p = h.pow2, b = h.block;
  if (!inverse && !h.signs.empty())
    for (int64_t i = 0; i < n; ++i) x[i] *= static_cast<T>(h.signs[i]);
  if (p > 1)
    for (int64_t a = 0; a < b; ++a) fwht(x + a * p, p);
  if (b > 1) {
    // x viewed as X [b, p]: forward Y = Bᵀ X, inverse Y = B X; row by row, as axpys over p.
    std::fill(tmp, tmp + n, T(0));
    const float* B = h.block_matrix.data();
    for (int64_t a = 0; a < b; ++a)
      for (int64_t o = 0; o < b; ++o) {
        const T c = static_cast<T>(inverse ? B[o * b + a] : B[a * b + o]);
        const T* src = x + a * p;
        T* dst = tmp + o * p;
        for (int64_t j = 0; j < p; ++j) dst[j] += c * src[j];
      }
    std::copy(tmp, tmp + n, x);
  }
  const T norm = T(1) / std::sqrt(static_cast<T>(p));
  for (int64_t i = 0; i < n; ++i) x[i] *= norm;
  if (inverse && !h.signs.empty())
    for (int64_t i = 0; i < n; ++i) x[i] *= static_cast<T>(h.signs[i]);
}

template <typename T>
void transform_rows(const HadamardTransform& h, T* x, int64_t rows, bool inverse) {
  if (h.n <= 0) fail("Hadamard transform used before it was made");
#pragma omp parallel if (rows * h.n > (int64_t(1) << 15))
  {
    std::vector<T> tmp(h.block > 1 ? h.n : 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) transform_row(h, x + r * h.n, tmp.data(), inverse);
  }
}

}  // namespace

HadamardTransform make_hadamard(int64_t n, uint64_t seed, bool random_signs) {
  if (n < 1) fail("Hadamard transform of size ", n);
  HadamardTransform h;
  h.n = n;
  int64_t p2 = 1;
  while (n % (p2 * 2) == 0) p2 *= 2;
  const int64_t m = n / p2;
  if (m == 1) {
    h.pow2 = n;
    h.construction = "sylvester(" + std::to_string(n) + ")";
  } else {
    for (int64_t b = m * 4; b <= std::min(n, kMaxPaleyBlock) && h.block == 1; b *= 2) {
      if (n % b != 0 || !is_prime(b - 1) || (b - 1) % 4 != 3) continue;
      const std::vector<int> H = paley_hadamard(b - 1);
      h.block = b;
      h.block_matrix.resize(b * b);
      const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(b)));
      for (int64_t i = 0; i < b * b; ++i) h.block_matrix[i] = static_cast<float>(H[i]) * scale;
      h.construction = "paley(" + std::to_string(b) + ")";
    }
    if (h.block == 1) {
      h.block = m;
      h.block_matrix = random_orthogonal(m, seed);
      h.construction = "random-orthogonal(" + std::to_string(m) + ")";
    }
    h.pow2 = n / h.block;
    if (h.pow2 > 1) h.construction += " x sylvester(" + std::to_string(h.pow2) + ")";
  }
  if (random_signs) {
    SplitMix rng{seed};
    h.signs.resize(n);
    for (float& s : h.signs) s = (rng.next() >> 63) ? -1.0f : 1.0f;
    h.construction += " with random signs (seed " + std::to_string(seed) + ")";
  }
  return h;
}

template <typename T>
void hadamard_rows(const HadamardTransform& h, T* x, int64_t rows) {
  transform_rows(h, x, rows, false);
}

template <typename T>
void hadamard_rows_inverse(const HadamardTransform& h, T* x, int64_t rows) {
  transform_rows(h, x, rows, true);
}

std::vector<double> hadamard_dense(const HadamardTransform& h) {
  const int64_t n = h.n, p = h.pow2, b = h.block;
  std::vector<double> t(n * n);
  const double norm = 1.0 / std::sqrt(static_cast<double>(p));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t a = i / p, c = i % p, a2 = j / p, c2 = j % p;
      const double sylvester = (__builtin_popcountll(static_cast<uint64_t>(c & c2)) & 1) ? -1.0 : 1.0;
      const double block = b > 1 ? h.block_matrix[a * b + a2] : 1.0;
      const double sign = h.signs.empty() ? 1.0 : h.signs[i];
      t[i * n + j] = sign * block * sylvester * norm;
    }
  return t;
}

void hadamard_rows_reference(const HadamardTransform& h, float* x, int64_t rows) {
  const std::vector<double> t = hadamard_dense(h);
  const int64_t n = h.n;
  std::vector<double> y(n);
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(y.begin(), y.end(), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) y[j] += static_cast<double>(x[r * n + i]) * t[i * n + j];
    for (int64_t j = 0; j < n; ++j) x[r * n + j] = static_cast<float>(y[j]);
  }
}

template void hadamard_rows<float>(const HadamardTransform&, float*, int64_t);
template void hadamard_rows<double>(const HadamardTransform&, double*, int64_t);
template void hadamard_rows_inverse<float>(const HadamardTransform&, float*, int64_t);
template void hadamard_rows_inverse<double>(const HadamardTransform&, double*, int64_t);

}  // namespace ikv::kernels
