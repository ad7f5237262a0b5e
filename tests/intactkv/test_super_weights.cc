// Super weights on testbed-26M: the detector finds the scalar of an early down_proj that makes
// most of the <bos> activation of channel 10 (the testbed's pivot channel), and it is causal:
// zeroing that one weight takes its product out of the residual stream and weakens the pivot in
// every later layer.
#include <algorithm>
#include <cmath>

#include "engine/forward.h"
#include "intactkv/super_weights.h"
#include "io/mapped_file.h"
#include "kernels/linear.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

// |h| of position 0, channel `ch`, after each decoder layer.
std::vector<double> bos_channel(const model::Weights& w, const std::vector<int32_t>& ids, int64_t ch) {
  engine::Engine e(w);
  engine::KVCache cache = engine::make_kv_cache(w.config, static_cast<int64_t>(ids.size()));
  std::vector<std::vector<float>> outs;
  e.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), nullptr, static_cast<int64_t>(ids.size()), {&outs});
  std::vector<double> v;
  for (const auto& o : outs) v.push_back(std::fabs(o[ch]));
  return v;
}

}  // namespace

TEST_CASE("super weights on testbed-26M: channel 10 at <bos>, and zeroing the weight removes the pivot") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("testbed-26M"));
  const auto tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  std::vector<int32_t> ids{w.config.bos_id};
  for (int32_t t : tok->encode(io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw").substr(0, 400)))
    ids.push_back(t);
  ids.resize(std::min<size_t>(ids.size(), 64));
  engine::Engine e(w);
  const std::vector<intactkv::SuperWeight> found = intactkv::find_super_weights(e, ids);
  REQUIRE(!found.empty());
  const intactkv::SuperWeight& s = found.front();
  MESSAGE("layer " << s.layer << " row " << s.row << " col " << s.col << " weight " << s.weight << " input " << s.input
                   << " output " << s.output << " share " << s.share << " ratio " << s.ratio << "; " << found.size()
                   << " layers");
  CHECK(s.position == 0);
  CHECK(s.row == 10);
  CHECK(std::fabs(s.share) > 0.5);  // one product makes most of the massive output
  const std::vector<double> before = bos_channel(w, ids, s.row);
  std::vector<float> down = kernels::linear_dense_weight(w.layers[s.layer].down);
  down[s.row * w.config.hidden + s.col] = 0.f;
  kernels::set_dense(w.layers[s.layer].down, std::move(down));
  const std::vector<double> after = bos_channel(w, ids, s.row);
  for (size_t l = 0; l < before.size(); ++l)
    MESSAGE("layer " << l << ": |h[<bos>, " << s.row << "]| " << before[l] << " -> " << after[l]);
  // The layer's output loses exactly that product (nothing else changed before it) ...
  CHECK(before[s.layer] - after[s.layer] == doctest::Approx(std::fabs(double(s.weight) * s.input)).epsilon(1e-3));
  for (int64_t l = 0; l < s.layer; ++l) CHECK(after[l] == before[l]);
  // ... and the pivot stays weaker in every later layer: testbed-26M builds its activation over
  // several layers (a third of it survives), unlike the single super weight of LLaMA-7B.
  for (size_t l = s.layer; l < before.size(); ++l) CHECK(after[l] < 0.8 * before[l]);
}
