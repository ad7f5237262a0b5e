// Pivot-token inspection (IntactKV Figure 1; "Massive Activations"): run the FP model on a text
// and find the tokens that carry activation peaks far above the rest and soak up attention.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "model/tokenizer.h"

namespace ikv::intactkv {

struct TokenPeak {
  int64_t position = 0;
  int32_t token = 0;
  std::string piece;
  float peak = 0;        // max |h| over channels at the layer where this token stands out most
  double ratio = 0;      // peak / that layer's median token peak
  int64_t layer = 0;     // that layer (0-based decoder-layer output)
  int64_t channel = 0;
  std::vector<int64_t> layers_above;  // layers where the token's peak is ≥ ratio × the layer median
  double attention_mass = 0;          // mean over layers, heads and later queries of attention to it
};

struct PivotReport {
  std::vector<TokenPeak> tokens;              // every position of the input
  std::vector<std::vector<double>> attention;  // [layer][key position]: mass received, mean over heads/queries
  std::vector<std::vector<double>> first_maps;  // [layer][q * N + k]: mean-over-heads attention, first N positions
  int64_t map_positions = 0;
  double median_peak = 0;  // the median token peak at token 0's peak layer
  std::vector<int64_t> pivots;  // positions massive in some layer, ranked by how far they stand out
  double pivot_ratio = 0;
};

// ratio: how far above the median token's peak a pivot's peak must be (default 5×: the pivots of
// LLaMA models are 100-1000× the median, ordinary tokens within ~3×).
PivotReport inspect_pivots(const engine::Engine& fp_engine, const model::Tokenizer& tok,
                           const std::vector<int32_t>& ids, int64_t map_positions = 16, double ratio = 5.0);

// The smallest IntactKV size that covers every pivot among a prefix's tokens (1 + last pivot's
// position; at least 1 for <bos>), with the reason in words.
struct AutoSize {
  int64_t size = 1;
  std::string explanation;
};
AutoSize auto_prefix_size(const PivotReport& report, int64_t prefix_len);

std::string format_inspect_table(const PivotReport& report, int64_t positions);

}  // namespace ikv::intactkv
