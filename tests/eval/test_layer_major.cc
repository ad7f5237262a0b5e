// Layer-major perplexity (every window through layer l before layer l+1 is read) computes what the
// window-by-window order computes, bit for bit, and gives the layers' mapped pages back as it goes.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <fstream>

#include "engine/kv_scheme.h"
#include "eval/perplexity.h"
#include "exp/model_setup.h"
#include "intactkv/prefix.h"
#include "io/mapped_file.h"
#include "model/weights.h"
#include "test_util.h"

using namespace ikv;
using namespace ikv::eval;

namespace {

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace

TEST_CASE("layer-major perplexity == window by window, bit for bit, with and without an IntactKV prefix") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");  // fp16 views
  REQUIRE(model::mapped_layer_bytes(m.weights) > 0);
  engine::Engine eng(m.weights);
  const auto stream = perplexity_stream(*m.tokenizer, io::read_text_file(test::data_root() + "/README-sample.txt"),
                                        m.weights.config.bos_id);
  const intactkv::Prefix prefix = intactkv::build_prefix(eng, {m.weights.config.bos_id});
  for (const intactkv::Prefix* p : {static_cast<const intactkv::Prefix*>(nullptr), &prefix})
    for (int kv_bits : {16, 4}) {
      CAPTURE(kv_bits);
      CAPTURE(p != nullptr);
      PerplexityOptions opt;
      opt.ctx = 64;
      opt.windows = 6;
      opt.first_window = 1;
      opt.kv_bits = kv_bits;
      opt.progress = false;
      const PerplexityResult plain = perplexity(eng, stream, opt, p);
      opt.layer_major = true;
      const PerplexityResult all_at_once = perplexity(eng, stream, opt, p);
      opt.layer_major_bytes = 2 * opt.ctx * m.weights.config.dim * 4;  // blocks of 2 windows: 2 + 2 + 1
      const PerplexityResult blocks = perplexity(eng, stream, opt, p);
      REQUIRE(plain.window_nll.size() == 5);
      CHECK(same_bits(all_at_once.window_nll, plain.window_nll));
      CHECK(same_bits(blocks.window_nll, plain.window_nll));
      CHECK(all_at_once.tokens_scored == plain.tokens_scored);
      CHECK(blocks.ppl == plain.ppl);
    }
}

TEST_CASE("layer-major perplexity == window by window with KIVI keys and protected sinks (the same sink counts)") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  const auto stream = perplexity_stream(*m.tokenizer, io::read_text_file(test::data_root() + "/README-sample.txt"),
                                        m.weights.config.bos_id);
  engine::EngineOptions kivi, sinks;
  kivi.kv.keys = engine::KeyQuant::per_channel_prerope, kivi.kv.residual = 16, kivi.kv.key_group = 16;
  sinks.kv.protect_sinks = true;
  for (const engine::EngineOptions& o : {kivi, sinks}) {
    PerplexityOptions opt;
    opt.ctx = 64;
    opt.windows = 5;
    opt.kv_bits = 4;
    opt.progress = false;
    const engine::Engine by_window(m.weights, o), by_layer(m.weights, o);
    const PerplexityResult a = perplexity(by_window, stream, opt);
    opt.layer_major = true;
    opt.layer_major_bytes = 2 * opt.ctx * m.weights.config.dim * 4;
    const PerplexityResult b = perplexity(by_layer, stream, opt);
    CHECK(same_bits(a.window_nll, b.window_nll));
    CHECK(by_layer.sinks_kept() == by_window.sinks_kept());
    CHECK(by_layer.sinks_kept().size() == (o.kv.protect_sinks ? 5u : 0u));
  }
}

TEST_CASE("release_layer_pages takes a mapped layer's pages out of the resident set; the weights stay usable") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  engine::Engine eng(m.weights);
  std::vector<int32_t> ids = m.tokenizer->encode("The quick brown fox jumps over the lazy dog.");
  ids.insert(ids.begin(), m.weights.config.bos_id);
  engine::KVCache cache = engine::make_kv_cache(m.weights.config, static_cast<int64_t>(ids.size()));
  std::vector<float> before, after;
  eng.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), &before);  // every layer read
  const int64_t mapped = model::mapped_layer_bytes(m.weights), rss = resident_bytes();
  for (int64_t l = 0; l < m.weights.config.n_layers; ++l) model::release_layer_pages(m.weights, l);
  // Pages shared with a neighbouring tensor stay; the layers are MBs, their edges a few pages.
  CHECK(rss - resident_bytes() > mapped * 9 / 10);
  cache.reset();
  eng.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), &after);  // read from the file again
  CHECK(after == before);
  // An owner that is not a mapped range (bytes in ordinary memory) is left alone.
  const kernels::HalfMatrix owned = kernels::owned_half(kernels::Half::kBf16, std::vector<uint16_t>(1 << 16, 0x3f80));
  io::release_held(owned.owner);
  CHECK(owned.data[12345] == 0x3f80);
  CHECK(io::held_bytes(owned.owner) == 0);
}
