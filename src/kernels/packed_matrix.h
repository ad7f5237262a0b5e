// PackedMatrix: the one low-bit weight format. RTN, GPTQ and AWQ produce it (quantize_rtn,
// pack_codes), the packed kernels (kernels/packed_matmul.h) read it, io serializes its vectors.
//
// A weight W[N, K] as in nn.Linear (rows = output features N, cols = input features K) is cut into
// groups of `group` consecutive input channels per row; each group has one fp16 scale and (asym)
// one integer zero point, and w' = (q - zero) * scale with q in [0, 2^bits - 1].
//
// ---- codes (std::vector<CodeWord>, rows * row_words) ---------------------------------------------
// A CodeWord is 64 bytes: 16 little-endian uint32 "lanes", 64-byte aligned (so the vector's storage
// is too, and a SIMD load of a word never splits a cache line). Each row is a whole number of
// words. Within a row, codes come in blocks shaped for 16-lane SIMD:
//   L  = 32 / gcd(bits, 32) codes per lane   (bits 2: 16, 3: 32, 4: 8, 5: 32, 6: 16, 7: 32, 8: 4)
//   a full block holds 16 * L codes in W = L * bits / 32 words.
//   Code k of the block (k = 16 * p + i: lane i in [0, 16), position p in [0, L)) sits at bits
//   [p * bits, p * bits + bits) of lane i's little-endian bitstream, and dword d of that bitstream
//   is lane i of the block's word d. So one aligned 64-byte load yields dword d of all 16 lanes, and
//   position p of every lane is one shift-and-mask away (or two dwords funnelled together when
//   the field straddles: bits 3 positions 10 and 21, bits 5/6/7 similarly).
//   bits 4: one word per 128 codes, nibble p of lane i = code 16p + i   (like ggml's q4 nibbles)
//   bits 3: three words (192 bytes) per 512 codes, dense: 3 bits per code, no padding
// The row's last block may be short: with r = K mod (16 L) codes left it has Lt = ceil(r / 16)
// positions in ceil(Lt * bits / 32) words, so a row wastes at most 15 codes plus the unused bits
// of its last dword per lane. Codes past K are 0.
//
// ---- scales (std::vector<uint16_t>, rows * groups_per_row) ---------------------------------------
// IEEE fp16 bits, row-major [n][g]. Quantizers round the scale to fp16 first and compute zero
// points and codes with the rounded value, so dequantize() is exactly what was quantized against.
//
// ---- zeros (std::vector<uint8_t>) ----------------------------------------------------------------
// Asymmetric only (sym leaves it empty: the zero point is 2^(bits-1), codes store q + 2^(bits-1)).
// The zero point of group (n, g) has flat index f = n * groups_per_row + g.
//   bits <= 4: two per byte, byte f / 2, low nibble for even f, high nibble for odd f;
//   bits >  4: one uint8 per group, byte f.
// Nibbles halve the zero bytes of W3/W4 (about 1% of the total bytes at group 128, which GEMV
// bandwidth pays for); a dense 3-bit packing would save a further 0.2% at the cost of bit-stream
// reads on every kernel's per-group set-up, and uint8 at bits > 4 keeps those widths simple.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ikv::kernels {

struct QuantSpec {
  int bits = 4;      // 2..8
  int group = 128;   // input channels per group; -1 = one group per row (per-channel)
  bool sym = false;  // symmetric: scale = max|w| / (2^(bits-1) - 1), no stored zero point
};

// Throws ikv::Error naming `what` (a tensor name) unless bits is in 2..8 and group is -1 or a
// positive divisor of cols.
void validate_spec(const QuantSpec& spec, int64_t cols, const std::string& what);

struct alignas(64) CodeWord {
  uint32_t lane[16];
};

struct PackedMatrix {
  int64_t rows = 0;    // N: output features
  int64_t cols = 0;    // K: input features
  int bits = 4;        // 2..8
  int64_t group = 0;   // input channels per group, resolved (== cols for per-channel)
  bool sym = false;
  std::vector<CodeWord> codes;   // rows * row_words, layout above
  std::vector<uint16_t> scales;  // rows * groups_per_row, fp16 bits
  std::vector<uint8_t> zeros;    // packed zero points (asym), empty (sym)

  int64_t groups_per_row() const { return group > 0 ? cols / group : 0; }
};

// Shape of one row's code blocks, derived from (bits, cols) alone.
struct CodeLayout {
  int lane_codes = 0;        // L: codes per lane in a full block
  int block_words = 0;       // W: 64-byte words per full block
  int64_t full_blocks = 0;   // full blocks per row
  int tail_positions = 0;    // Lt: positions in the short last block (0 if none)
  int tail_words = 0;        // words in the short last block
  int64_t row_words = 0;     // full_blocks * W + tail_words
  int64_t padded_cols = 0;   // 16 * (full_blocks * L + Lt): K rounded up to whole positions
  int block_codes() const { return 16 * lane_codes; }
};
CodeLayout code_layout(int bits, int64_t cols);

// The vector sizes of a rows x cols matrix packed by `spec` (valid for cols), from the layout
// above alone: what a file declares before the quantizer has made the matrix. pack_codes, the one
// maker of PackedMatrix, allocates by it.
struct PackedSizes {
  int64_t row_words = 0;       // codes: rows * row_words
  int64_t groups_per_row = 0;  // scales: rows * groups_per_row
  int64_t zero_bytes = 0;      // zeros (0 when sym)
};
PackedSizes packed_sizes(int64_t rows, int64_t cols, const QuantSpec& spec);

// Code k (0 <= k < padded_cols) of the row starting at `row`. Reference decoder; kernels decode
// whole words at once.
inline uint32_t code_at(const CodeWord* row, const CodeLayout& lay, int bits, int64_t k) {
  const CodeWord* block = row + k / lay.block_codes() * lay.block_words;
  const int c = static_cast<int>(k % lay.block_codes());
  const int p = c / 16, lane = c % 16;
  const int bit = p * bits, d = bit / 32, off = bit % 32;
  uint64_t v = block[d].lane[lane] >> off;
  if (off + bits > 32) v |= static_cast<uint64_t>(block[d + 1].lane[lane]) << (32 - off);
  return static_cast<uint32_t>(v) & ((1u << bits) - 1);
}

// Integer zero point of group g of row n (sym: 2^(bits-1)).
int zero_point(const PackedMatrix& m, int64_t n, int64_t g);
float scale_value(const PackedMatrix& m, int64_t n, int64_t g);

// Builds the packed matrix from integer codes and per-group scales/zero points, for quantizers
// that choose codes themselves (GPTQ, AWQ). q is [rows][cols] row-major: asym q in
// [0, 2^bits - 1], sym q signed in [-2^(bits-1), 2^(bits-1) - 1]. scales is [rows][groups] and
// every value must be finite, positive and exactly representable in fp16 (round with
// round_scale_to_fp16 before choosing codes). zeros is [rows][groups] in [0, 2^bits - 1] for asym
// and must be nullptr for sym. Violations throw ikv::Error naming `what`.
PackedMatrix pack_codes(const int32_t* q, const float* scales, const int32_t* zeros, int64_t rows,
                        int64_t cols, const QuantSpec& spec, const std::string& what);

// Inverse of pack_codes: q (rows * cols) in the same convention (signed for sym).
void unpack_codes(const PackedMatrix& m, int32_t* q);

// fp32 -> nearest fp16 (ties to even) -> fp32: the scale value the packed format can hold.
float round_scale_to_fp16(float scale);

// Reference dequantization: out[n * cols + k] = (q - zero) * scale, in fp32.
void dequantize(const PackedMatrix& m, float* out);
// Same for rows [row_begin, row_end), written to out[(n - row_begin) * cols + k].
void dequantize_rows(const PackedMatrix& m, int64_t row_begin, int64_t row_end, float* out);

// Bytes a kernel streams to use the matrix: codes + scales + zeros.
size_t packed_bytes(const PackedMatrix& m);

}  // namespace ikv::kernels
