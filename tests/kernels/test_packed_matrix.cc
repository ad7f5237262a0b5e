// The packed format: block shapes, the exact bit positions of codes and zero points, pack/unpack
// round trips for every width, dequantize by hand, and the errors pack_codes raises.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "io/error.h"
#include "kernels/packed_matrix.h"
#include "quant/rtn.h"

using ikv::kernels::CodeLayout;
using ikv::kernels::PackedMatrix;
using ikv::kernels::QuantSpec;

namespace {

struct Codes {  // random codes, scales and zero points for a rows x cols matrix
  std::vector<int32_t> q, zeros;
  std::vector<float> scales;
};

Codes random_codes(int64_t rows, int64_t cols, const QuantSpec& spec, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t groups = spec.group == -1 ? 1 : cols / spec.group;
  const int lo = spec.sym ? -(1 << (spec.bits - 1)) : 0;
  const int hi = spec.sym ? (1 << (spec.bits - 1)) - 1 : (1 << spec.bits) - 1;
  std::uniform_int_distribution<int> code(lo, hi), zero(0, (1 << spec.bits) - 1);
  std::uniform_real_distribution<float> scale(1e-3f, 1.0f);
  Codes c;
  for (int64_t i = 0; i < rows * cols; ++i) c.q.push_back(code(rng));
  for (int64_t i = 0; i < rows * groups; ++i) {
    c.scales.push_back(ikv::kernels::round_scale_to_fp16(scale(rng)));
    if (!spec.sym) c.zeros.push_back(zero(rng));
  }
  return c;
}

PackedMatrix pack(const Codes& c, int64_t rows, int64_t cols, const QuantSpec& spec) {
  return ikv::kernels::pack_codes(c.q.data(), c.scales.data(), spec.sym ? nullptr : c.zeros.data(),
                                rows, cols, spec, "test.weight");
}

}  // namespace

TEST_CASE("code layout: blocks of 16 lanes, dense bits, short last block") {
  // bits: codes per lane L, words per block W
  const int L[9] = {0, 0, 16, 32, 8, 32, 16, 32, 4};
  for (int bits = 2; bits <= 8; ++bits) {
    const CodeLayout lay = ikv::kernels::code_layout(bits, 4096);
    CHECK(lay.lane_codes == L[bits]);
    CHECK(lay.block_words * 512 == lay.lane_codes * 16 * bits);  // 64-byte words hold bits/code exactly
    CHECK(lay.row_words * 64 * 8 == 4096 * bits);                // 4096 is whole blocks: no padding
    CHECK(lay.padded_cols == 4096);
  }
  // W3 with K = 11008 = 21 * 512 + 256: a short block of 16 positions in 2 words (48 of 64 bits).
  const CodeLayout w3 = ikv::kernels::code_layout(3, 11008);
  CHECK(w3.full_blocks == 21);
  CHECK(w3.tail_positions == 16);
  CHECK(w3.tail_words == 2);
  CHECK(w3.row_words == 21 * 3 + 2);
  CHECK(w3.padded_cols == 11008);
  // W4 with K = 172 = 128 + 44: three positions (48 codes, 4 padding) in one word.
  const CodeLayout w4 = ikv::kernels::code_layout(4, 172);
  CHECK(w4.full_blocks == 1);
  CHECK(w4.tail_positions == 3);
  CHECK(w4.tail_words == 1);
  CHECK(w4.padded_cols == 176);
}

TEST_CASE("bit positions: W4 nibbles and W3 dense fields, as documented") {
  // W4, one row of 128 codes, code k = k % 16 ^ (k / 16): lane i, nibble p holds code 16p + i.
  {
    std::vector<int32_t> q(128);
    for (int k = 0; k < 128; ++k) q[k] = (k % 16) ^ (k / 16);
    const std::vector<float> s = {1.0f};
    const std::vector<int32_t> z = {0};
    const PackedMatrix m = ikv::kernels::pack_codes(q.data(), s.data(), z.data(), 1, 128, {4, -1, false}, "w");
    REQUIRE(m.codes.size() == 1);
    for (int i = 0; i < 16; ++i) {
      uint32_t expect = 0;
      for (int p = 0; p < 8; ++p) expect |= static_cast<uint32_t>(q[16 * p + i]) << (4 * p);
      CHECK(m.codes[0].lane[i] == expect);
    }
  }
  // W3, one row of 512 codes: lane i's 96-bit stream holds code 16p + i at bits [3p, 3p + 3);
  // position 10 straddles words 0 and 1 (bits 30..32), position 21 words 1 and 2 (bits 63..65).
  {
    std::vector<int32_t> q(512);
    for (int k = 0; k < 512; ++k) q[k] = (k * 5 + k / 16) % 8;
    const std::vector<float> s = {1.0f};
    const std::vector<int32_t> z = {3};
    const PackedMatrix m = ikv::kernels::pack_codes(q.data(), s.data(), z.data(), 1, 512, {3, -1, false}, "w");
    REQUIRE(m.codes.size() == 3);
    for (int i = 0; i < 16; ++i) {
      unsigned __int128 stream = 0;
      for (int p = 0; p < 32; ++p) stream |= static_cast<unsigned __int128>(q[16 * p + i]) << (3 * p);
      CHECK(m.codes[0].lane[i] == static_cast<uint32_t>(stream));
      CHECK(m.codes[1].lane[i] == static_cast<uint32_t>(stream >> 32));
      CHECK(m.codes[2].lane[i] == static_cast<uint32_t>(stream >> 64));
    }
  }
}

TEST_CASE("zero points: nibbles for bits <= 4 (even index low), bytes above") {
  // 1 row, 3 groups of 16: flat indices 0, 1, 2 -> bytes {z0 | z1 << 4, z2}.
  std::vector<int32_t> q(48, 0);
  const std::vector<float> s = {0.5f, 0.25f, 2.0f};
  const std::vector<int32_t> z4 = {3, 12, 7};
  const PackedMatrix m4 = ikv::kernels::pack_codes(q.data(), s.data(), z4.data(), 1, 48, {4, 16, false}, "w");
  CHECK(m4.zeros == std::vector<uint8_t>{3 | 12 << 4, 7});
  const std::vector<int32_t> z8 = {3, 200, 255};
  const PackedMatrix m8 = ikv::kernels::pack_codes(q.data(), s.data(), z8.data(), 1, 48, {8, 16, false}, "w");
  CHECK(m8.zeros == std::vector<uint8_t>{3, 200, 255});
  CHECK(m8.scales == std::vector<uint16_t>{0x3800, 0x3400, 0x4000});  // fp16 0.5, 0.25, 2.0
  // Symmetric: no zero points stored; codes carry the 2^(bits-1) offset.
  const std::vector<int32_t> qs = {-8, 7, 0, -1};
  const PackedMatrix ms = ikv::kernels::pack_codes(qs.data(), s.data(), nullptr, 1, 4, {4, -1, true}, "w");
  CHECK(ms.zeros.empty());
  CHECK(ms.codes[0].lane[0] == 0u);      // -8 + 8
  CHECK(ms.codes[0].lane[1] == 15u);     // 7 + 8
  CHECK(ms.codes[0].lane[2] == 8u);
  CHECK(ms.codes[0].lane[3] == 7u);
  CHECK(ikv::kernels::zero_point(ms, 0, 0) == 8);
}

TEST_CASE("pack/unpack round trip and dequantize by hand, every width and shape") {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (int64_t cols : {8, 64, 136, 172, 384, 1040})
        for (int group : {-1, 4, 8, 16, 128}) {
          if (group > 0 && cols % group != 0) continue;
          const QuantSpec spec{bits, group, sym};
          const int64_t rows = 3;
          const Codes c = random_codes(rows, cols, spec, bits * 1000 + static_cast<uint32_t>(cols) + group);
          const PackedMatrix m = pack(c, rows, cols, spec);
          CAPTURE(bits);
          CAPTURE(sym);
          CAPTURE(cols);
          CAPTURE(group);
          std::vector<int32_t> back(rows * cols);
          ikv::kernels::unpack_codes(m, back.data());
          CHECK(back == c.q);
          std::vector<float> w(rows * cols);
          ikv::kernels::dequantize(m, w.data());
          const int64_t g = group == -1 ? cols : group;
          bool same = true;
          for (int64_t n = 0; n < rows; ++n)
            for (int64_t k = 0; k < cols; ++k) {
              const int64_t f = n * (cols / g) + k / g;
              const int q = sym ? c.q[n * cols + k] : c.q[n * cols + k] - c.zeros[f];
              same &= w[n * cols + k] == static_cast<float>(q) * c.scales[f];
            }
          CHECK(same);
          const CodeLayout lay = ikv::kernels::code_layout(bits, cols);
          CHECK(m.codes.size() == static_cast<size_t>(rows * lay.row_words));
          CHECK(reinterpret_cast<uintptr_t>(m.codes.data()) % 64 == 0);
        }
}

TEST_CASE("packed_bytes counts codes, fp16 scales and packed zero points") {
  const int64_t rows = 4096, cols = 4096;
  const std::vector<float> w(rows * cols, 0.25f);
  const PackedMatrix w4 = ikv::quant::quantize_rtn(w.data(), rows, cols, {4, 128, false}, "w");
  CHECK(ikv::kernels::packed_bytes(w4) == rows * cols / 2 + rows * 32 * 2 + rows * 32 / 2);
  const PackedMatrix w3 = ikv::quant::quantize_rtn(w.data(), rows, cols, {3, 128, false}, "w");
  CHECK(ikv::kernels::packed_bytes(w3) == rows * cols * 3 / 8 + rows * 32 * 2 + rows * 32 / 2);
  const PackedMatrix w3s = ikv::quant::quantize_rtn(w.data(), rows, cols, {3, 128, true}, "w");
  CHECK(ikv::kernels::packed_bytes(w3s) == rows * cols * 3 / 8 + rows * 32 * 2);
}

TEST_CASE("pack_codes rejects what the format cannot hold") {
  std::vector<int32_t> q(16, 0), z = {0};
  std::vector<float> s = {1.0f};
  auto pack16 = [&](const QuantSpec& spec, const int32_t* zeros) {
    return ikv::kernels::pack_codes(q.data(), s.data(), zeros, 1, 16, spec, "blk.0.w");
  };
  CHECK_NOTHROW(pack16({4, 16, false}, z.data()));
  q[3] = 16;
  CHECK_THROWS_WITH_AS(pack16({4, 16, false}, z.data()), doctest::Contains("blk.0.w: code 16 at row 0 col 3 outside [0, 15]"), ikv::Error);
  q[3] = -9;
  CHECK_THROWS_WITH_AS(pack16({4, 16, true}, nullptr), doctest::Contains("code -9 at row 0 col 3 outside [-8, 7]"), ikv::Error);
  q[3] = 0;
  z[0] = 16;
  CHECK_THROWS_WITH_AS(pack16({4, 16, false}, z.data()), doctest::Contains("zero point 16"), ikv::Error);
  z[0] = 0;
  s[0] = 0.1f;  // not an fp16 value
  CHECK_THROWS_WITH_AS(pack16({4, 16, false}, z.data()), doctest::Contains("round_scale_to_fp16"), ikv::Error);
  s[0] = ikv::kernels::round_scale_to_fp16(0.1f);
  CHECK_NOTHROW(pack16({4, 16, false}, z.data()));
  s[0] = -1.0f;
  CHECK_THROWS_AS(pack16({4, 16, false}, z.data()), ikv::Error);
  s[0] = 1.0f;
  CHECK_THROWS_WITH_AS(pack16({4, 16, true}, z.data()), doctest::Contains("symmetric packing takes no zero points"), ikv::Error);
  CHECK_THROWS_WITH_AS(pack16({4, 16, false}, nullptr), doctest::Contains("needs zero points"), ikv::Error);
  CHECK_THROWS_WITH_AS(pack16({4, 5, false}, z.data()), doctest::Contains("does not divide"), ikv::Error);
}
