// RTN with the super weights held out on testbed-26M (exp/keep_super_weights.h): the detected
// weight (layer 2 down_proj[10, 1353]) is exact after quantization, the rest of its group is
// quantized without it in the range (smaller error), and the <bos> massive activation it makes
// survives W3. (Asymmetric RTN puts the end of its grid on the group's max, so on testbed-26M the
// super weight already comes through W3g128 nearly exact and the perplexity does not improve:
// results/pivot-methods.md.)
#include <cmath>

#include "engine/forward.h"
#include "exp/keep_super_weights.h"
#include "exp/variant.h"
#include "kernels/linear.h"
#include "test_util.h"

using namespace ikv;

namespace {

// h[<bos>, channel] after decoder layer `layer`.
float bos_activation(const model::Weights& w, const std::vector<int32_t>& ids, int64_t layer, int64_t channel) {
  engine::Engine e(w);
  engine::KVCache cache = engine::make_kv_cache(w.config, static_cast<int64_t>(ids.size()));
  std::vector<std::vector<float>> outs;
  e.forward(cache, ids.data(), static_cast<int64_t>(ids.size()), nullptr, static_cast<int64_t>(ids.size()), {&outs});
  return outs[layer][channel];
}

}  // namespace

TEST_CASE("keep_super_weights: the super weight is exact, its activation survives W3, PPL improves") {
  if (test::data_root().empty()) return;
  const exp::LoadedModel fp = exp::load_model_verified(test::data_root(), "testbed-26M");
  const std::vector<intactkv::SuperWeight> super = exp::model_super_weights(fp);
  REQUIRE(!super.empty());
  const intactkv::SuperWeight s = super.front();
  CHECK(s.row == 10);
  CHECK(s.col == 1353);
  exp::QuantizerSpec plain = exp::rtn_spec(3), kept = plain;
  kept.keep_super_weights = true;
  model::Weights w0 = fp.weights, w1 = fp.weights;
  exp::quantize_or_load(w0, fp, plain, test::data_root(), 0);
  exp::quantize_or_load(w1, fp, kept, test::data_root(), 0);
  const int64_t F = fp.weights.config.hidden;
  const std::vector<float> d0 = kernels::linear_dense_weight(w0.layers[s.layer].down);
  const std::vector<float> d1 = kernels::linear_dense_weight(w1.layers[s.layer].down);
  const std::vector<float> ref = kernels::linear_dense_weight(fp.weights.layers[s.layer].down);
  CHECK(d1[s.row * F + s.col] == s.weight);  // bit for bit
  CHECK(d0[s.row * F + s.col] != s.weight);
  // The rest of its group: quantized on a range without the super weight, so closer to FP.
  double e0 = 0, e1 = 0;
  for (int64_t c = s.col / 128 * 128; c < s.col / 128 * 128 + 128; ++c)
    if (c != s.col) e0 += std::fabs(d0[s.row * F + c] - ref[s.row * F + c]), e1 += std::fabs(d1[s.row * F + c] - ref[s.row * F + c]);
  MESSAGE("group error without / with the hold-out: " << e0 << " / " << e1);
  CHECK(e1 < e0);
  // The massive activation at <bos> (after the super weight's layer) and the perplexity.
  std::vector<int32_t> ids{fp.weights.config.bos_id};
  for (int32_t t : fp.tokenizer->encode("Apple Inc. is a worldwide tech company.")) ids.push_back(t);
  const float a_fp = bos_activation(fp.weights, ids, s.layer, s.row), a0 = bos_activation(w0, ids, s.layer, s.row),
              a1 = bos_activation(w1, ids, s.layer, s.row);
  MESSAGE("h[<bos>, " << s.row << "] after layer " << s.layer << ": FP " << a_fp << ", RTN W3 " << a0 << ", kept " << a1);
  CHECK(std::fabs(a1 - a_fp) < 0.05 * std::fabs(a_fp));  // the weight makes ~2/3 of it
  // Left out of its group but not restored, the activation collapses: the restore is what keeps it.
  model::Weights w2 = fp.weights;
  exp::leave_out_of_groups(w2, {s}, 128);
  exp::quantize_weights(w2, plain);
  const float a2 = bos_activation(w2, ids, s.layer, s.row);
  MESSAGE("... left out without the restore: " << a2);
  CHECK(std::fabs(a2 - a_fp) > 0.3 * std::fabs(a_fp));
}
