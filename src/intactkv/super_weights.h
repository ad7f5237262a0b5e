// Super weights (Yu et al. 2024, "The Super Weight in Large Language Models"): the few scalar
// weights of an early down_proj that create a model's massive activation. One forward over a
// prompt finds them: in each layer, the down_proj output entry (token, row r) that stands out of
// the layer's outputs, and the input channel c whose product W[r, c]·a[token, c] makes most of it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/forward.h"

namespace ikv::intactkv {

struct SuperWeight {
  int64_t layer = 0;     // 0-based decoder layer
  int64_t position = 0;  // the token where the massive output forms
  int64_t row = 0;       // down_proj output channel (the residual-stream channel of the activation)
  int64_t col = 0;       // down_proj input channel
  float weight = 0;      // W_down[row, col]
  float input = 0;       // the down_proj input a[position, col]
  float output = 0;      // the down_proj output y[position, row]
  double share = 0;      // weight·input / output: how much of the output this one product makes
  double ratio = 0;      // |output| / the median over tokens of each token's max |y|
};

// Every layer whose largest |down_proj output| is at least `ratio` times the median token's
// largest, with its top entry's super weight, in layer order.
std::vector<SuperWeight> find_super_weights(const engine::Engine& fp, const std::vector<int32_t>& ids,
                                            double ratio = 50.0);

}  // namespace ikv::intactkv
