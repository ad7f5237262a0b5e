// Calibration samples for IntactKV: ShareGPT conversations in the Vicuna v1.1 template (loss on the
// assistant tokens) or plain text (loss on every token). Every sample begins with the prefix's
// tokens; the prefix KV stands in for them and they are never rerun.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace ikv::intactkv {

struct CalibrationSample {
  std::vector<int32_t> tokens;     // the prefix tokens first
  std::vector<int64_t> loss_rows;  // loss tokens, as indices among tokens[P..] (the new tokens)
};

struct CalibrationData {
  std::string path;
  bool chat = false;  // ShareGPT (assistant-token loss) rather than plain text
  std::vector<CalibrationSample> train, heldout;
};

struct CalibrationDataOptions {
  int64_t samples = 128;
  int64_t heldout = 16;           // samples after the training ones, for the held-out MSE
  int64_t max_len = 1024;         // tokens per sample, prefix included (the reference truncates so)
  int64_t min_loss_tokens = 50;   // ShareGPT: keep conversations with more loss tokens (reference: 50)
  uint64_t seed = 0;              // ShareGPT: the order conversations are drawn in
};

// sharegpt (the data root's 1000 full ShareGPT conversations) | FILE.json (ShareGPT) | FILE (plain
// text), resolved like other data files (absolute, relative, or under the data root) and checked
// against the data root's SHA256SUMS. A missing file is an Error naming where it was looked for.
std::string resolve_calibration_data(const std::string& data_root, const std::string& data);

// ShareGPT: conversations in a seeded random order, rendered (vicuna_turns, tokenize_vicuna with the
// Vicuna system prompt), truncated to max_len; those with more than min_loss_tokens assistant
// tokens are taken, the first `samples` for training and the next `heldout` held out. When the
// prefix tokens begin the rendered tokens (bos, vicuna) the sample is the rendered conversation;
// otherwise the prefix replaces <bos> + system message (a prompt:TEXT prefix is then the system
// prompt). Plain text: the text's tokens cut into consecutive chunks of max_len − P, each after the
// prefix tokens. Too little data for samples + heldout is an Error saying how much there is.
CalibrationData load_calibration_data(const std::string& path, const model::Tokenizer& tok,
                                      const std::vector<int32_t>& prefix_tokens, int32_t eos_id,
                                      const CalibrationDataOptions& opt);

}  // namespace ikv::intactkv
