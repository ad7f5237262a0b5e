// libFuzzer target: the llama2.c checkpoint reader on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "io/error.h"
#include "model/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ikv::model::Llama2cCheckpoint ck = ikv::model::parse_llama2c(data, size, "fuzz.bin");
    float sink = 0;
    for (float v : ck.embed) sink += v;
    asm volatile("" : : "x"(sink));
  } catch (const ikv::Error&) {
  }
  return 0;
}
