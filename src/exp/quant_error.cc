#include "exp/quant_error.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "exp/variant.h"
#include "intactkv/calibrate_data.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/text.h"
#include "quant/recon_error.h"

namespace ikv::exp {
namespace {

// <bos> + ctx − 1 text tokens per sequence until `tokens` tokens are taken (the last one may be short).
std::vector<std::vector<int32_t>> heldout_sequences(const std::vector<int32_t>& text, int32_t bos, int64_t ctx,
                                                    int64_t tokens, const std::string& path) {
  std::vector<std::vector<int32_t>> seqs;
  int64_t taken = 0, pos = 0;
  while (taken < tokens) {
    const int64_t want = std::min(ctx, tokens - taken);
    if (want < 2) break;
    if (pos + want - 1 > static_cast<int64_t>(text.size()))
      fail(path, ": ", text.size(), " tokens are too few for --tokens ", tokens);
    std::vector<int32_t> s;
    if (bos >= 0) s.push_back(bos);
    s.insert(s.end(), text.begin() + pos, text.begin() + pos + want - 1);
    pos += want - 1;
    taken += want;
    seqs.push_back(std::move(s));
  }
  return seqs;
}

std::string label(const std::string& m) {
  std::string u = m;
  for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return u;
}

}  // namespace

std::vector<std::string> quant_error_methods(const std::string& list) {
  std::vector<std::string> out{"rtn"};  // the baseline is always measured, first
  std::stringstream ss(list);
  for (std::string m; std::getline(ss, m, ',');) {
    if (m != "rtn" && m != "gptq" && m != "awq") fail("--methods: '", m, "' is not a weight quantizer (rtn, gptq, awq)");
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  return out;
}

QuantErrorResult run_quant_error(const std::string& root, const QuantErrorSettings& a) {
  const std::vector<std::string>& methods = a.methods;
  if (a.quant.wbits < 2 || a.quant.wbits > 8) fail("--wbits ", a.quant.wbits, " is out of range (2..8)");
  if (a.quant.group == 0 || a.quant.group < -1) fail("--group ", a.quant.group, " must be positive or -1");
  if (a.tokens < 2 || a.ctx < 2) fail("--tokens ", a.tokens, " / --ctx ", a.ctx, " must be >= 2");
  if (a.quant.samples < 1 || a.quant.seq_len < 2) fail("--calib-samples / --calib-len must be >= 1 / >= 2");
  LoadedModel fp = load_model_verified(root, a.model, "fp32");
  const model::Config& c = fp.weights.config;
  std::vector<std::string> names;
  for (auto& nl : model::named_linears(fp.weights)) {
    kernels::validate_spec({a.quant.wbits, a.quant.group, a.quant.sym}, nl.linear->in, nl.name);
    names.push_back(nl.name);
  }

  // Held-out activations must not be what GPTQ/AWQ calibrated on.
  const std::string text_path = resolve_text_dataset(root, a.heldout);
  bool calibrated = false;
  for (const auto& m : methods) calibrated |= m != "rtn";
  if (calibrated) {
    std::error_code ec;
    const std::string calib_path = intactkv::resolve_calibration_data(root, a.quant.data);
    if (std::filesystem::equivalent(calib_path, text_path, ec))
      fail("--heldout ", a.heldout, " is the calibration data (", calib_path, "); hold out another text");
  }
  const int64_t ctx = std::min(a.ctx, c.max_pos);
  const auto heldout = heldout_sequences(fp.tokenizer->encode(io::read_utf8_text(text_path)), c.bos_id, ctx, a.tokens, text_path);
  int64_t heldout_tokens = 0;
  for (const auto& s : heldout) heldout_tokens += static_cast<int64_t>(s.size());

  quant::CalibrationTokens calib;
  int64_t calib_tokens = 0;
  if (calibrated) {
    QuantizerSpec cq = a.quant;
    cq.method = "awq";
    calib = calibration_tokens(root, fp, cq, 0);
    for (const auto& s : calib) calib_tokens += static_cast<int64_t>(s.size());
  }

  QuantErrorResult out;
  out.linears = names;
  out.heldout_tokens = heldout_tokens;
  out.calib_sequences = calib.size();
  out.calib_tokens = calib_tokens;
  std::vector<QuantErrorMethod>& results = out.methods;
  std::vector<std::vector<std::vector<float>>> weights;
  for (const std::string& m : methods) {
    QuantErrorMethod r;
    r.method = m;
    QuantizerSpec q = a.quant;
    q.method = m;
    model::Weights w = fp.weights;
    quant::AwqFold fold;
    const auto start = std::chrono::steady_clock::now();
    try {
      quantize_weights(w, q, m == "rtn" ? quant::CalibrationTokens{} : calib, m == "awq" ? &fold : nullptr);
    } catch (const std::exception& e) {
      if (m == "rtn") throw;  // the baseline failing means the settings are wrong
      r.failure = e.what();
      results.push_back(r);
      continue;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<std::vector<float>> eff;
    auto linears = model::named_linears(w);
    for (auto& nl : linears) {
      auto it = fold.find(nl.name);
      eff.push_back(quant::effective_weight(*nl.linear, it == fold.end() ? nullptr : &it->second));
    }
    weights.push_back(std::move(eff));
    results.push_back(r);
  }
  const auto errors = quant::reconstruction_errors(fp.weights, heldout, weights);
  for (size_t m = 0, k = 0; m < results.size(); ++m)
    if (results[m].failure.empty()) results[m].error = errors[k++];

  return out;
}

std::string quant_error_markdown(const QuantErrorSettings& a, const QuantErrorResult& result, const std::string& command) {
  const std::vector<std::string>& names = result.linears;
  const std::vector<QuantErrorMethod>& r = result.methods;
  const int64_t heldout_tokens = result.heldout_tokens, calib_tokens = result.calib_tokens;
  const size_t calib_seqs = result.calib_sequences;
  std::ostringstream s;
  const QuantizerSpec& q = a.quant;
  s << "# Layer reconstruction error: " << io::escape_md(a.model) << ", W" << q.wbits
    << (q.group == -1 ? " per channel" : " g" + std::to_string(q.group)) << (q.sym ? " sym" : " asym") << "\n\n";
  s << "Generated by `" << command << "`.\n\n";
  s << "Relative output error ‖X·W_fpᵀ − X·W_effᵀ‖_F / ‖X·W_fpᵀ‖_F of every decoder linear, where X holds the FP "
       "model's inputs to that linear on "
    << heldout_tokens << " held-out tokens (" << a.heldout << ", sequences of " << a.ctx
    << " tokens after <bos>) and W_eff is the quantized weight in the FP model's coordinates (dequantized, GPTQ's "
       "act-order permutation and AWQ's folded scales undone).";
  std::string calibrated;
  for (const auto& m : r)
    if (m.method != "rtn") calibrated += (calibrated.empty() ? "" : " and ") + label(m.method);
  if (!calibrated.empty())
    s << " Calibration (" << calibrated << "): " << a.quant.data << ", " << calib_seqs << " sequences, " << calib_tokens
      << " tokens.";
  s << " † marks an error not below RTN's.";
  if (std::any_of(r.begin(), r.end(), [](const QuantErrorMethod& m) { return m.method == "awq"; }))
    s << " AWQ chooses the q/k/v input scale on the attention block's output (llm-awq's objective), not on "
         "each linear's: where it trades q/k error (damped by the softmax) for v error, q/k can land above RTN.";
  s << "\n\n";
  s << "| layer | linear |";
  for (const auto& m : r) s << " " << label(m.method) << " |";
  s << "\n|---|---|";
  for (size_t i = 0; i < r.size(); ++i) s << "---:|";
  s << "\n";
  const std::vector<double>& rtn = r[0].error;
  char buf[64];
  for (size_t i = 0; i < names.size(); ++i) {
    // "model.layers.3.self_attn.q_proj.weight" → "3", "q_proj"
    const std::string& n = names[i];
    const size_t a0 = n.find("layers.") + 7, a1 = n.find('.', a0);
    const size_t b1 = n.rfind(".weight"), b0 = n.rfind('.', b1 - 1) + 1;
    s << "| " << n.substr(a0, a1 - a0) << " | " << n.substr(b0, b1 - b0) << " |";
    for (const auto& m : r) {
      if (m.error.empty()) {
        s << " – |";
        continue;
      }
      std::snprintf(buf, sizeof buf, " %.4f%s |", m.error[i], &m == &r[0] || m.error[i] < rtn[i] ? "" : " †");
      s << buf;
    }
    s << "\n";
  }
  s << "| | **mean** |";
  for (const auto& m : r) {
    if (m.error.empty()) {
      s << " – |";
      continue;
    }
    double mean = 0;
    for (double e : m.error) mean += e / static_cast<double>(m.error.size());
    std::snprintf(buf, sizeof buf, " %.4f |", mean);
    s << buf;
  }
  s << "\n| | **below RTN on every linear** |";
  for (const auto& m : r) {
    if (&m == &r[0]) {
      s << " – |";
      continue;
    }
    if (m.error.empty()) {
      s << " failed |";
      continue;
    }
    size_t below = 0;
    for (size_t i = 0; i < rtn.size(); ++i) below += m.error[i] < rtn[i];
    s << (below == rtn.size() ? " yes" : " **no**") << " (" << below << "/" << rtn.size() << ") |";
  }
  s << "\n";
  for (const auto& m : r)
    if (!m.failure.empty()) s << "\n" << label(m.method) << " failed: " << m.failure << "\n";
  s << "\nQuantization time:";
  for (const auto& m : r)
    if (m.failure.empty()) {
      std::snprintf(buf, sizeof buf, " %s %.1f s;", label(m.method).c_str(), m.seconds);
      s << buf;
    }
  s.seekp(-1, std::ios_base::end);
  s << ".\n";
  return s.str();
}

nlohmann::json quant_error_json(const QuantErrorSettings& a, const QuantErrorResult& r) {
  nlohmann::json j = {{"model", a.model}, {"wbits", a.quant.wbits}, {"group", a.quant.group}, {"sym", a.quant.sym},
                      {"heldout", a.heldout}, {"heldout_tokens", r.heldout_tokens},
                      {"calibration", {{"data", a.quant.data}, {"sequences", r.calib_sequences}, {"tokens", r.calib_tokens}}},
                      {"linears", r.linears}};
  for (const auto& m : r.methods) {
    nlohmann::json mj = {{"seconds", m.seconds}};
    if (!m.failure.empty()) {
      mj["failure"] = m.failure;
    } else {
      size_t below = 0;
      for (size_t i = 0; i < m.error.size(); ++i) below += m.error[i] < r.methods[0].error[i];
      mj["errors"] = m.error;
      mj["below_rtn"] = below;
    }
    j["methods"][m.method] = mj;
  }
  return j;
}

}  // namespace ikv::exp
