#include "exp/keep_super_weights.h"

#include "engine/forward.h"
#include "io/error.h"
#include "kernels/linear.h"

namespace ikv::exp {

std::vector<intactkv::SuperWeight> model_super_weights(const LoadedModel& fp) {
  // The prompt of "The Super Weight in Large Language Models": a super weight does not depend on
  // the text, it fires on the first token whatever follows.
  std::vector<int32_t> ids = fp.weights.config.bos_tokens();
  for (int32_t t : fp.tokenizer->encode("Apple Inc. is a worldwide tech company.")) ids.push_back(t);
  return intactkv::find_super_weights(engine::Engine(fp.weights), ids);
}

void leave_out_of_groups(model::Weights& w, const std::vector<intactkv::SuperWeight>& super, int group) {
  for (const intactkv::SuperWeight& s : super) {
    kernels::Linear& down = w.layers.at(s.layer).down;
    std::vector<float>& W = kernels::expand_to_f32(down);
    const int64_t g = group > 0 ? group : down.in, g0 = s.col / g * g, g1 = std::min<int64_t>(g0 + g, down.in);
    if (g1 - g0 < 2) fail("keep_super_weights: layer ", s.layer + 1, " down_proj has groups of one weight");
    double sum = 0;
    for (int64_t c = g0; c < g1; ++c)
      if (c != s.col) sum += W[s.row * down.in + c];
    W[s.row * down.in + s.col] = static_cast<float>(sum / (g1 - g0 - 1));
  }
}

void restore_super_weights(model::Weights& w, const std::vector<intactkv::SuperWeight>& super) {
  for (const intactkv::SuperWeight& s : super) kernels::hold_out_weight(w.layers.at(s.layer).down, s.row, s.col, s.weight);
}

}  // namespace ikv::exp
