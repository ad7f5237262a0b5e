#include "kernels/cpu.h"

#include <cpuid.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "io/error.h"

namespace ikv::kernels {
namespace {

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & bit_OSXSAVE;
  const bool avx = c & bit_AVX;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM_Hi256, Hi16_ZMM
  f.fma = ymm_state && (c & bit_FMA);
  f.f16c = ymm_state && (c & bit_F16C);
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ymm_state && (b & bit_AVX2);
  f.avx512f = zmm_state && (b & bit_AVX512F);
  f.avx512bw = zmm_state && (b & bit_AVX512BW);
  f.avx512vl = zmm_state && (b & bit_AVX512VL);
  f.avx512dq = zmm_state && (b & bit_AVX512DQ);
  f.avx512vnni = zmm_state && (c & bit_AVX512VNNI);
  f.avx512vbmi = zmm_state && (c & bit_AVX512VBMI);
  f.avx512vbmi2 = zmm_state && (c & bit_AVX512VBMI2);
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512bf16 = zmm_state && (a & bit_AVX512BF16);
  return f;
}

bool avx512_disabled_by_env() {
  const char* v = std::getenv("IKV_NO_AVX512");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool cpu_has_avx2() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}

bool cpu_has_avx512() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && cpu_has_avx2() &&
         !avx512_disabled_by_env();
}

bool cpu_has_avx512_bf16() { return cpu_has_avx512() && cpu_features().avx512bf16; }
bool cpu_has_avx512_vnni() { return cpu_has_avx512() && cpu_features().avx512vnni; }
bool cpu_has_avx512_vbmi() {
  return cpu_has_avx512() && cpu_features().avx512vbmi && cpu_features().avx512vbmi2;
}

Isa resolve_isa(Isa requested) {
  switch (requested) {
    case Isa::kAuto: return cpu_has_avx512() ? Isa::kAvx512 : Isa::kPortable;
    case Isa::kAvx512:
      if (!cpu_has_avx512()) fail("AVX-512 kernels requested but this CPU (or IKV_NO_AVX512) does not allow them");
      return Isa::kAvx512;
    case Isa::kPortable: return Isa::kPortable;
  }
  return Isa::kPortable;
}

}  // namespace ikv::kernels
