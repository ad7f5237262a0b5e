// Orthogonal Hadamard-based transforms for QuaRot (quant/quarot.h): an n×n orthogonal matrix
//
//   T = diag(s) · (B ⊗ S_p) / √p,   n = b · p,
//
// applied to row vectors, y = x · T. S_p is the Sylvester Hadamard matrix of order p = 2^k (±1,
// symmetric: S_2p = [[S_p, S_p], [S_p, −S_p]]), applied by the fast Walsh–Hadamard transform in
// p log p adds. B is a b×b orthonormal block (B Bᵀ = I) for the part of n that is not a power of
// two, applied as a dense b×b product. s is ±1 per coordinate (random signs, or all +1).
//
// The block B, for n = 2^j · m with m odd (make_hadamard picks the first that fits):
//   m = 1                       b = 1: T is a (normalized) Sylvester matrix.
//   b = m · 2^i ≤ 256, i ≥ 2,   Paley I: for a prime q ≡ 3 (mod 4), H = I + [[0, 1ᵀ], [−1, Q]]
//   with b − 1 = q prime ≡ 3    with Q_ij = χ(j − i) (the Legendre symbol mod q) is a ±1 Hadamard
//   (mod 4)                     matrix of order q + 1; B = H / √b. So every entry of √n·T is ±1:
//                               1408 = 44 · 32 (q = 43), 5120 = 20 · 256, 13824 = 108 · 128.
//   otherwise                   B is a random orthogonal m×m matrix (Q of the QR decomposition of a
//                               seeded Gaussian matrix, signs fixed by diag R: Haar-distributed).
//                               11008 = 43 · 256 lands here: a Hadamard matrix of order 172 or
//                               344 exists but not by Paley I with a prime (171 = 9·19, 343 = 7³),
//                               and QuaRot's hard-coded H_172 table is not reproduced here. The
//                               block spreads outliers over 43 coordinates instead of ±1 mixing,
//                               which is what the rotation needs: orthogonality and incoherence.
// The cap of 256 on b bounds the online cost at b + log2 p multiply-adds per coordinate.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ikv::kernels {

struct HadamardTransform {
  int64_t n = 0;                    // size
  int64_t pow2 = 1;                 // p: the Sylvester factor (a power of two)
  int64_t block = 1;                // b = n / p
  std::vector<float> block_matrix;  // B [b, b] row-major, orthonormal; empty when b == 1
  std::vector<float> signs;         // s [n] of ±1; empty = all +1
  std::string construction;         // e.g. "paley(44) x sylvester(32)"
};

// The transform of size n (>= 1). seed draws the random orthogonal block (when one is needed) and,
// with random_signs, the ±1 signs s. Deterministic across platforms (splitmix64 + Box–Muller).
HadamardTransform make_hadamard(int64_t n, uint64_t seed = 0, bool random_signs = false);

// x[r] ← x[r] · T for rows r of x [rows, n] (in place; OpenMP over rows when there are many).
template <typename T>
void hadamard_rows(const HadamardTransform& h, T* x, int64_t rows);
// x[r] ← x[r] · Tᵀ = x[r] · T⁻¹: the inverse, and the vector-Jacobian product of hadamard_rows.
template <typename T>
void hadamard_rows_inverse(const HadamardTransform& h, T* x, int64_t rows);

// The reference twin: T as a dense n×n matrix (double, row-major) ...
std::vector<double> hadamard_dense(const HadamardTransform& h);
// ... and x[r] ← x[r] · T by a plain matrix product accumulated in double.
void hadamard_rows_reference(const HadamardTransform& h, float* x, int64_t rows);

}  // namespace ikv::kernels
