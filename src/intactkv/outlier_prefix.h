// A data-chosen IntactKV prefix, after PrefixQuant (Chen et al. 2024): the tokens that carry
// outlier activations in calibration text are put into the prefix, so their KV is computed once by
// the FP model and never again by the quantized one (which then sees no such outliers).
//
// For every calibration sequence and decoder layer, each token's max |x| over the channels of the
// q/k/v input (attention RMSNorm output) and of the down_proj input; a token is an outlier when,
// in some layer, that max exceeds eta (PrefixQuant's η = 64) times the median over the sequence's
// tokens. Position 0 (<bos>) is excluded. n = ceil(mean outlier count per sequence); the prefix is
// <bos> then the n token ids most often found as outliers (ties: the larger ratio, then the smaller id).
// <bos> comes first, as in every sequence the model was trained on, so a window's own <bos> is the
// prefix's (intactkv::matched_prefix_length): no double <bos> (PrefixQuant's issue #16).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/forward.h"

namespace ikv::intactkv {

struct OutlierToken {
  int32_t token = 0;
  int64_t count = 0;      // positions where it was an outlier, over all sequences
  double max_ratio = 0;   // its largest max/median ratio
};

struct OutlierPrefixChoice {
  std::vector<int32_t> tokens;       // the prefix: <bos> (if the model has one), then the chosen ids
  std::vector<OutlierToken> ranked;  // every token id found as an outlier, in the order chosen
  double mean_outliers = 0;          // outlier positions per sequence (position 0 excluded)
  int64_t n = 0;                     // ceil(mean_outliers): how many ids were taken
};

OutlierPrefixChoice choose_outlier_prefix(const engine::Engine& fp, const std::vector<std::vector<int32_t>>& sequences,
                                          double eta = 64.0);

}  // namespace ikv::intactkv
