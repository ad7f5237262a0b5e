// Runtime CPU feature detection for kernel dispatch. The library is built for x86-64-v3 (AVX2, FMA,
// F16C); *_avx512.cc kernels run only where cpu_has_avx512() says so.
#pragma once

namespace ikv::kernels {

// What the CPU and OS support (cpuid + xgetbv), detected once.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512bf16 = false, avx512vnni = false, avx512vbmi = false, avx512vbmi2 = false;
};
const CpuFeatures& cpu_features();

// AVX-512 F+BW+VL+DQ usable (OS saves zmm state) and not disabled by IKV_NO_AVX512=1. The
// variable is read on every call so tests can cover both paths in one process.
bool cpu_has_avx512();
bool cpu_has_avx512_bf16();  // cpu_has_avx512() and BF16
bool cpu_has_avx512_vnni();  // cpu_has_avx512() and VNNI
bool cpu_has_avx512_vbmi();  // cpu_has_avx512() and VBMI + VBMI2 (byte/bit shuffles)
bool cpu_has_avx2();         // AVX2 + FMA + F16C (the build baseline)

// Which code path a kernel call takes: the fastest available, or forced.
enum class Isa { kAuto, kPortable, kAvx512 };
// kAuto -> kAvx512 or kPortable by cpu_has_avx512(); kAvx512 on a CPU without it -> ikv::Error.
Isa resolve_isa(Isa requested);

}  // namespace ikv::kernels
