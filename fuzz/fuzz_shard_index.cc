// libFuzzer target: the model.safetensors.index.json parser on arbitrary bytes. It must reject or
// accept without crashing, and whatever it accepts must be safe to join to the model folder.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/error.h"
#include "model/shard_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ikv::model::ShardIndex index = ikv::model::parse_shard_index(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz/model.safetensors.index.json");
    // The promises of shard_index.h: plain names only, every tensor's shard listed.
    for (const auto& s : index.shards)
      if (s.empty() || s == "." || s.find('/') != std::string::npos || s.find("..") != std::string::npos ||
          s.find('\0') != std::string::npos)
        std::abort();
    for (const auto& [tensor, shard] : index.shard_of) {
      bool listed = false;
      for (const auto& s : index.shards) listed |= s == shard;
      if (tensor.empty() || !listed) std::abort();
    }
  } catch (const ikv::Error&) {
  }
  return 0;
}
