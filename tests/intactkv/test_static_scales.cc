// PrefixQuant's static scales on testbed-26M (intactkv/static_scales.h): calibrated on data
// without outliers (a one-token sequence, every tensor's range its own) they reproduce QuaRot's
// dynamic W4A4 bit for bit; calibrated on text without the <bos> prefix, <bos>'s massive
// activation sets the range of the super weight's down_proj input, which the prefix takes out.
#include <algorithm>

#include "engine/forward.h"
#include "exp/variant.h"
#include "intactkv/static_scales.h"
#include "io/mapped_file.h"
#include "test_util.h"

using namespace ikv;

TEST_CASE("static scales on testbed-26M: = dynamic without outliers; the <bos> prefix shrinks them") {
  if (test::data_root().empty()) return;
  exp::LoadedModel m = exp::load_model_verified(test::data_root(), "testbed-26M");
  const intactkv::Prefix bos = intactkv::build_prefix(engine::Engine(m.weights), {m.weights.config.bos_id});
  exp::QuantizerSpec q;
  q.method = "quarot", q.wbits = 4, q.abits = 4, q.group = -1;
  exp::quantize_weights(m.weights, q);
  const model::Config& c = m.weights.config;
  const engine::Engine dynamic(m.weights);

  // One token: every tensor's calibrated range is that token's own, so static == dynamic.
  const std::vector<int32_t> one = {c.bos_id};
  engine::EngineOptions o;
  o.scales = intactkv::calibrate_static_scales(dynamic, nullptr, {one});
  std::vector<float> ld, ls;
  engine::KVCache a = engine::make_kv_cache(c, 1), b = engine::make_kv_cache(c, 1);
  dynamic.forward(a, one.data(), 1, &ld);
  engine::Engine(m.weights, o).forward(b, one.data(), 1, &ls);
  CHECK(ld == ls);

  // Text: <bos> + wikitext pieces, with and without the <bos> prefix in the cache.
  const auto tok = model::open_tokenizer(test::model_dir("testbed-26M"));
  const std::string text = io::read_text_file(test::data_root() + "/datasets/wikitext-2-raw/wiki.test.raw");
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> s{c.bos_id};
    for (int32_t t : tok->encode(text.substr(5000 + i * 3000, 1500))) s.push_back(t);
    s.resize(std::min<size_t>(s.size(), 200));
    seqs.push_back(s);
  }
  const engine::StaticScales without = intactkv::calibrate_static_scales(dynamic, nullptr, seqs);
  const engine::StaticScales with = intactkv::calibrate_static_scales(dynamic, &bos, seqs);
  double widest = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto& w0 = without.layers[l];
    const auto& w1 = with.layers[l];
    for (auto [x0, x1] : {std::pair{w0.attn_in, w1.attn_in}, {w0.o_in, w1.o_in}, {w0.ffn_in, w1.ffn_in}, {w0.down_in, w1.down_in}}) {
      widest = std::max(widest, double(x0) / x1);
    }
  }
  MESSAGE("largest range <bos> adds to a layer's tensor: " << widest << "x");
  // QuaRot's rotations spread the massive activation over the channels of most tensors (ratios
  // within ~10%), but not the down_proj input of the super weight's layer (layer 1: its channel
  // 1353 at <bos>), whose range <bos> triples.
  CHECK(widest > 2);
  // And the static model then differs from the dynamic one on text.
  o.scales = with;
  const int64_t n = static_cast<int64_t>(seqs[0].size());
  engine::KVCache d = engine::make_kv_cache(c, n), s = engine::make_kv_cache(c, n);
  dynamic.forward(d, seqs[0].data(), n, &ld);
  engine::Engine(m.weights, o).forward(s, seqs[0].data(), n, &ls);
  CHECK(ld != ls);
}
