// libFuzzer target: the safetensors header parser must reject or accept any bytes without reading
// outside them (ASan) or invoking undefined behaviour (UBSan).
#include <cstddef>
#include <cstdint>

#include "io/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ikv::io::SafetensorsHeader h = ikv::io::parse_safetensors(data, size, "fuzz.safetensors");
    // Touch every byte the parser vouched for, so an out-of-bounds view is caught here.
    uint8_t sink = 0;
    for (const auto& t : h.tensors)
      for (size_t i = 0; i < t.nbytes; ++i) sink ^= t.data[i];
    asm volatile("" : : "r"(sink));
  } catch (const ikv::Error&) {
  }
  return 0;
}
