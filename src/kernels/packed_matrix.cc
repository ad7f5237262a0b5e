#include "kernels/packed_matrix.h"

#include <cmath>
#include <numeric>

#include "io/dtype.h"
#include "io/error.h"

namespace ikv::kernels {

void validate_spec(const QuantSpec& spec, int64_t cols, const std::string& what) {
  if (spec.bits < 2 || spec.bits > 8)
    fail(what, ": quantization bits ", spec.bits, " out of range (supported: 2..8)");
  if (cols <= 0) fail(what, ": input width ", cols, " must be positive");
  if (spec.group == -1) return;
  if (spec.group <= 0)
    fail(what, ": group size ", spec.group, " must be positive (or -1 for per-channel)");
  if (cols % spec.group != 0) {
    int64_t hint = 1;  // the largest power-of-two divisor of cols, a size a user can pick
    while (cols % (hint * 2) == 0 && hint * 2 <= spec.group) hint *= 2;
    fail(what, ": group size ", spec.group, " does not divide input width ", cols,
         " (use a divisor such as ", hint, ", or -1 for per-channel)");
  }
}

CodeLayout code_layout(int bits, int64_t cols) {
  CodeLayout lay;
  lay.lane_codes = 32 / std::gcd(bits, 32);
  lay.block_words = lay.lane_codes * bits / 32;
  lay.full_blocks = cols / lay.block_codes();
  const int64_t rest = cols % lay.block_codes();
  lay.tail_positions = static_cast<int>((rest + 15) / 16);
  lay.tail_words = (lay.tail_positions * bits + 31) / 32;
  lay.row_words = lay.full_blocks * lay.block_words + lay.tail_words;
  lay.padded_cols = 16 * (lay.full_blocks * lay.lane_codes + lay.tail_positions);
  return lay;
}

PackedSizes packed_sizes(int64_t rows, int64_t cols, const QuantSpec& spec) {
  PackedSizes s;
  s.row_words = code_layout(spec.bits, cols).row_words;
  s.groups_per_row = spec.group == -1 ? 1 : cols / spec.group;
  const int64_t groups = rows * s.groups_per_row;
  if (!spec.sym) s.zero_bytes = spec.bits > 4 ? groups : (groups + 1) / 2;  // nibbles up to 4 bits
  return s;
}

int zero_point(const PackedMatrix& m, int64_t n, int64_t g) {
  if (m.sym) return 1 << (m.bits - 1);
  const int64_t f = n * m.groups_per_row() + g;
  if (m.bits > 4) return m.zeros[f];
  return (m.zeros[f / 2] >> (4 * (f % 2))) & 0xF;
}

float scale_value(const PackedMatrix& m, int64_t n, int64_t g) {
  return io::fp16_to_fp32(m.scales[n * m.groups_per_row() + g]);
}

float round_scale_to_fp16(float scale) { return io::fp16_to_fp32(io::fp32_to_fp16(scale)); }

namespace {

// Writes code v at index k of a row (the inverse of code_at); the row starts zeroed.
void put_code(CodeWord* row, const CodeLayout& lay, int bits, int64_t k, uint32_t v) {
  CodeWord* block = row + k / lay.block_codes() * lay.block_words;
  const int c = static_cast<int>(k % lay.block_codes());
  const int p = c / 16, lane = c % 16;
  const int bit = p * bits, d = bit / 32, off = bit % 32;
  block[d].lane[lane] |= v << off;
  if (off + bits > 32) block[d + 1].lane[lane] |= v >> (32 - off);
}

}  // namespace

PackedMatrix pack_codes(const int32_t* q, const float* scales, const int32_t* zeros, int64_t rows,
                        int64_t cols, const QuantSpec& spec, const std::string& what) {
  validate_spec(spec, cols, what);
  if (rows <= 0) fail(what, ": row count ", rows, " must be positive");
  if (spec.sym != (zeros == nullptr))
    fail(what, spec.sym ? ": symmetric packing takes no zero points"
                        : ": asymmetric packing needs zero points");
  PackedMatrix m;
  m.rows = rows;
  m.cols = cols;
  m.bits = spec.bits;
  m.group = spec.group == -1 ? cols : spec.group;
  m.sym = spec.sym;
  const int64_t groups = m.groups_per_row();
  const int qmax = (1 << spec.bits) - 1;
  const int offset = spec.sym ? 1 << (spec.bits - 1) : 0;  // sym codes store q + 2^(bits-1)

  m.scales.resize(rows * groups);
  for (int64_t f = 0; f < rows * groups; ++f) {
    const float s = scales[f];
    if (!(std::isfinite(s) && s > 0) || round_scale_to_fp16(s) != s)
      fail(what, ": scale ", s, " of row ", f / groups, " group ", f % groups,
           " is not a positive fp16 value (round it with round_scale_to_fp16 first)");
    m.scales[f] = io::fp32_to_fp16(s);
  }
  if (!spec.sym) {
    m.zeros.assign(packed_sizes(rows, cols, spec).zero_bytes, 0);
    for (int64_t f = 0; f < rows * groups; ++f) {
      const int32_t z = zeros[f];
      if (z < 0 || z > qmax)
        fail(what, ": zero point ", z, " of row ", f / groups, " group ", f % groups,
             " outside [0, ", qmax, "]");
      if (spec.bits > 4) m.zeros[f] = static_cast<uint8_t>(z);
      else m.zeros[f / 2] |= static_cast<uint8_t>(z << (4 * (f % 2)));
    }
  }

  const CodeLayout lay = code_layout(spec.bits, cols);
  m.codes.assign(rows * lay.row_words, CodeWord{});
  for (int64_t n = 0; n < rows; ++n) {
    CodeWord* row = m.codes.data() + n * lay.row_words;
    for (int64_t k = 0; k < cols; ++k) {
      const int32_t code = q[n * cols + k] + offset;
      if (code < 0 || code > qmax)
        fail(what, ": code ", q[n * cols + k], " at row ", n, " col ", k, " outside [",
             -offset, ", ", qmax - offset, "]");
      put_code(row, lay, spec.bits, k, static_cast<uint32_t>(code));
    }
  }
  return m;
}

void unpack_codes(const PackedMatrix& m, int32_t* q) {
  const CodeLayout lay = code_layout(m.bits, m.cols);
  const int offset = m.sym ? 1 << (m.bits - 1) : 0;
  for (int64_t n = 0; n < m.rows; ++n) {
    const CodeWord* row = m.codes.data() + n * lay.row_words;
    for (int64_t k = 0; k < m.cols; ++k)
      q[n * m.cols + k] = static_cast<int32_t>(code_at(row, lay, m.bits, k)) - offset;
  }
}

void dequantize_rows(const PackedMatrix& m, int64_t row_begin, int64_t row_end, float* out) {
  const CodeLayout lay = code_layout(m.bits, m.cols);
  for (int64_t n = row_begin; n < row_end; ++n) {
    const CodeWord* row = m.codes.data() + n * lay.row_words;
    float* o = out + (n - row_begin) * m.cols;
    for (int64_t k = 0; k < m.cols; ++k) {
      const int64_t g = k / m.group;
      const int q = static_cast<int>(code_at(row, lay, m.bits, k));
      o[k] = static_cast<float>(q - zero_point(m, n, g)) * scale_value(m, n, g);
    }
  }
}

void dequantize(const PackedMatrix& m, float* out) { dequantize_rows(m, 0, m.rows, out); }

size_t packed_bytes(const PackedMatrix& m) {
  return m.codes.size() * sizeof(CodeWord) + m.scales.size() * sizeof(uint16_t) + m.zeros.size();
}

}  // namespace ikv::kernels
