#include "intactkv/calibrate_data.h"

#include <algorithm>
#include <random>

#include "intactkv/chat_template.h"
#include "intactkv/prefix_spec.h"
#include "io/data_root.h"
#include "io/error.h"
#include "io/mapped_file.h"

namespace ikv::intactkv {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Builds a sample from full tokens and a per-token loss mask, truncated to max_len.
CalibrationSample make_sample(std::vector<int32_t> tokens, const std::vector<uint8_t>& mask, int64_t P,
                              int64_t max_len) {
  if (static_cast<int64_t>(tokens.size()) > max_len) tokens.resize(max_len);
  CalibrationSample s;
  for (int64_t t = P; t < static_cast<int64_t>(tokens.size()); ++t)
    if (mask[t]) s.loss_rows.push_back(t - P);
  s.tokens = std::move(tokens);
  return s;
}

void load_chat(CalibrationData& d, const model::Tokenizer& tok, const std::vector<int32_t>& prefix, int32_t eos_id,
               const CalibrationDataOptions& opt) {
  const std::vector<Conversation> convs = load_sharegpt(d.path);
  // Fisher-Yates with our own index draw: std::shuffle's sequence is not fixed by the standard.
  std::mt19937_64 rng(opt.seed);
  std::vector<size_t> order(convs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  const int64_t P = static_cast<int64_t>(prefix.size()), want = opt.samples + opt.heldout;
  int64_t usable = 0;
  for (size_t i : order) {
    const Conversation turns = vicuna_turns(convs[i]);
    if (turns.empty()) continue;
    TokenizedChat c = tokenize_vicuna(turns, kVicunaSystemPrompt, tok, prefix.empty() ? -1 : prefix[0], eos_id);
    std::vector<int32_t> tokens = c.tokens;
    std::vector<uint8_t> mask = c.assistant;
    if (static_cast<int64_t>(tokens.size()) < P || !std::equal(prefix.begin(), prefix.end(), tokens.begin())) {
      tokens.assign(prefix.begin(), prefix.end());
      tokens.insert(tokens.end(), c.tokens.begin() + c.system_end, c.tokens.end());
      mask.assign(P, 0);
      mask.insert(mask.end(), c.assistant.begin() + c.system_end, c.assistant.end());
    }
    CalibrationSample s = make_sample(std::move(tokens), mask, P, opt.max_len);
    if (static_cast<int64_t>(s.loss_rows.size()) <= opt.min_loss_tokens) continue;
    (usable < opt.samples ? d.train : d.heldout).push_back(std::move(s));
    if (++usable == want) return;
  }
  fail(d.path, ": only ", usable, " of ", convs.size(), " conversations have more than ", opt.min_loss_tokens,
       " assistant tokens within max-len ", opt.max_len, "; ", want, " are needed (samples + heldout)");
}

void load_text(CalibrationData& d, const model::Tokenizer& tok, const std::vector<int32_t>& prefix,
               const CalibrationDataOptions& opt) {
  const std::string text = io::read_utf8_text(d.path);
  const int64_t P = static_cast<int64_t>(prefix.size()), chunk = opt.max_len - P, want = opt.samples + opt.heldout;
  // Encode only as much text as needed (a corpus may be hundreds of MB): grow until enough tokens.
  std::vector<int32_t> ids;
  for (size_t chars = static_cast<size_t>(want * chunk * 6);; chars *= 2) {
    ids = tok.encode(text.substr(0, chars));
    if (static_cast<int64_t>(ids.size()) >= want * chunk || chars >= text.size()) break;
  }
  const int64_t have = static_cast<int64_t>(ids.size()) / chunk;
  if (have < want)
    fail(d.path, ": ", ids.size(), " tokens of text make ", have, " samples of ", chunk, " tokens after the ", P,
         "-token prefix; ", want, " are needed (samples + heldout)");
  const std::vector<uint8_t> mask(opt.max_len, 1);
  for (int64_t i = 0; i < want; ++i) {
    std::vector<int32_t> tokens = prefix;
    tokens.insert(tokens.end(), ids.begin() + i * chunk, ids.begin() + (i + 1) * chunk);
    (i < opt.samples ? d.train : d.heldout).push_back(make_sample(std::move(tokens), mask, P, opt.max_len));
  }
}

}  // namespace

std::string resolve_calibration_data(const std::string& data_root, const std::string& data) {
  if (data.empty()) fail("--data is empty (sharegpt, a ShareGPT .json file or a text file)");
  const std::string rel = data == "sharegpt" ? "datasets/sharegpt/sharegpt_v3_sample1000_fullconv.json" : data;
  const std::string path = io::data_file(data_root, rel);
  io::verify_data_file(data_root, path);
  return path;
}

CalibrationData load_calibration_data(const std::string& path, const model::Tokenizer& tok,
                                      const std::vector<int32_t>& prefix_tokens, int32_t eos_id,
                                      const CalibrationDataOptions& opt) {
  if (opt.samples <= 0) fail("--samples ", opt.samples, " must be positive");
  if (opt.heldout < 0) fail("--heldout ", opt.heldout, " must be >= 0");
  if (opt.max_len <= static_cast<int64_t>(prefix_tokens.size()))
    fail("--max-len ", opt.max_len, " leaves no tokens after the ", prefix_tokens.size(), "-token prefix");
  CalibrationData d;
  d.path = path;
  d.chat = ends_with(path, ".json");
  if (d.chat)
    load_chat(d, tok, prefix_tokens, eos_id, opt);
  else
    load_text(d, tok, prefix_tokens, opt);
  return d;
}

}  // namespace ikv::intactkv
