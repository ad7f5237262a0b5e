// libFuzzer target: the experiment config parser (YAML -> YamlNode -> ExperimentConfig) on arbitrary
// text. Every problem must surface as an ikv::Error; a yaml-cpp or std exception escaping, a crash,
// an ASan/UBSan report, or an alias bomb blowing memory (-rss_limit_mb) is a finding. A config that
// loads is trusted afterwards, so it must also survive what runs store: its labels.
// The file name has no folder, so `extends:` resolves against the working directory; the seeds use
// no `extends`, and a mutated one that names a readable file just parses that file too.
#include <cstddef>
#include <cstdint>
#include <string>

#include "exp/config.h"
#include "io/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ikv::exp::ExperimentConfig c;
  try {
    c = ikv::exp::parse_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  } catch (const ikv::Error&) {
    return 0;
  }
  size_t sink = 0;
  for (const auto& q : c.quantizers) sink += q.short_label().size();
  for (const auto& v : c.intactkv) sink += v.short_label().size();
  asm volatile("" : : "r"(sink));
  return 0;
}
