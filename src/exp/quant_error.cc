#include "exp/quant_error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "exp/report.h"
#include "exp/variant.h"
#include "intactkv/calibrate_data.h"
#include "io/error.h"
#include "io/mapped_file.h"
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

// "model.layers.5.mlp.down_proj.weight" -> "5.down_proj"
std::string short_name(const std::string& n) {
  const size_t a0 = n.find("layers.") + 7, a1 = n.find('.', a0);
  const size_t b1 = n.rfind(".weight"), b0 = n.rfind('.', b1 - 1) + 1;
  return n.substr(a0, a1 - a0) + "." + n.substr(b0, b1 - b0);
}

}  // namespace

QuantErrorResult run_quant_error(const std::string& root, const LoadedModel& fp, const QuantizerSpec& q,
                                 const QuantErrorTask& task, int64_t seed) {
  if (q.wbits < 2 || q.wbits > 8) fail("--wbits ", q.wbits, " is out of range (2..8)");
  if (q.group == 0 || q.group < -1) fail("--group ", q.group, " must be positive or -1");
  if (task.tokens < 2 || task.ctx < 2) fail("--tokens ", task.tokens, " / --ctx ", task.ctx, " must be >= 2");
  if (q.samples < 1 || q.seq_len < 2) fail("--calib-samples / --calib-len must be >= 1 / >= 2");
  QuantErrorResult out;
  model::Weights w = fp.weights;
  for (auto& nl : model::named_linears(w)) {
    kernels::validate_spec({q.wbits, q.group, q.sym}, nl.linear->in, nl.name);
    out.linears.push_back(short_name(nl.name));
  }

  // Held-out activations must not be what GPTQ/AWQ calibrated on.
  const std::string text_path = resolve_text_dataset(root, task.heldout);
  if (q.needs_calibration()) {
    std::error_code ec;
    const std::string calib_path = intactkv::resolve_calibration_data(root, q.data);
    if (std::filesystem::equivalent(calib_path, text_path, ec))
      fail("--heldout ", task.heldout, " is the calibration data (", calib_path, "); hold out another text");
  }
  const model::Config& c = fp.weights.config;
  const auto heldout = heldout_sequences(fp.tokenizer->encode(io::read_utf8_text(text_path)), c.bos_id,
                                         std::min(task.ctx, c.max_pos), task.tokens, text_path);
  for (const auto& s : heldout) out.heldout_tokens += static_cast<int64_t>(s.size());
  const quant::CalibrationTokens calib = calibration_tokens(root, fp, q, static_cast<uint64_t>(seed));
  out.calib_sequences = calib.size();
  for (const auto& s : calib) out.calib_tokens += static_cast<int64_t>(s.size());

  quant::AwqFold fold;
  const auto start = std::chrono::steady_clock::now();
  try {
    quantize_weights(w, q, calib, q.method == "awq" ? &fold : nullptr);
  } catch (const std::exception& e) {
    if (!q.needs_calibration()) throw;  // RTN failing means the settings are wrong
    out.failure = e.what();
    return out;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::vector<float>> eff;
  for (auto& nl : model::named_linears(w)) {
    auto it = fold.find(nl.name);
    eff.push_back(quant::effective_weight(*nl.linear, it == fold.end() ? nullptr : &it->second));
  }
  out.error = quant::reconstruction_errors(fp.weights, heldout, {eff}).at(0);
  return out;
}

double mean_error(const std::vector<double>& error) {
  double mean = 0;
  for (double e : error) mean += e / static_cast<double>(error.size());
  return mean;
}

CellRecord quant_error_record(const QuantErrorResult& r) {
  if (!r.failure.empty()) fail(r.failure);
  CellRecord rec;
  rec.metrics.push_back({"error_mean", mean_error(r.error), NAN, r.heldout_tokens});
  for (size_t i = 0; i < r.error.size(); ++i)
    rec.metrics.push_back({"error@" + r.linears[i], r.error[i], NAN, r.heldout_tokens});
  return rec;
}

std::vector<std::vector<std::string>> quant_error_rows(const std::vector<std::string>& linears,
                                                       const std::vector<QuantErrorColumn>& cols, bool rtn_first) {
  auto number = [](double v, bool dagger) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f%s", v, dagger ? " †" : "");
    return std::string(buf);
  };
  std::vector<std::vector<std::string>> rows = {{"layer", "linear"}};
  for (const auto& c : cols) rows[0].push_back(c.label);
  const std::vector<double>* rtn = rtn_first ? &cols.at(0).error : nullptr;
  for (size_t i = 0; i < linears.size(); ++i) {
    const size_t dot = linears[i].find('.');  // "5.down_proj" -> "5", "down_proj"
    rows.push_back({linears[i].substr(0, dot), linears[i].substr(dot + 1)});
    for (const auto& c : cols)
      rows.back().push_back(c.error.empty() ? "–"
                                            : number(c.error[i], rtn && &c != &cols[0] && !(c.error[i] < (*rtn)[i])));
  }
  rows.push_back({"", "**mean**"});
  for (const auto& c : cols) rows.back().push_back(c.error.empty() ? "–" : number(mean_error(c.error), false));
  if (!rtn) return rows;
  rows.push_back({"", "**below RTN on every linear**"});
  for (const auto& c : cols) {
    size_t below = 0;
    for (size_t i = 0; i < c.error.size(); ++i) below += c.error[i] < (*rtn)[i];
    const std::string count = " (" + std::to_string(below) + "/" + std::to_string(rtn->size()) + ")";
    rows.back().push_back(&c == &cols[0]   ? "–"
                          : c.error.empty() ? "failed"
                                            : (below == rtn->size() ? "yes" : "**no**") + count);
  }
  return rows;
}

std::string markdown_rows(const std::vector<std::vector<std::string>>& rows) {
  std::string s;
  for (size_t r = 0; r < rows.size(); ++r) {
    s += "|";
    for (const std::string& cell : rows[r]) s += (cell.empty() ? "" : " " + cell) + " |";
    s += "\n";
    if (r == 0) {
      s += "|";
      for (size_t i = 0; i < rows[0].size(); ++i) s += i < 2 ? "---|" : "---:|";
      s += "\n";
    }
  }
  return s;
}

std::vector<QuantErrorTable> quant_error_tables(const std::vector<CellRecord>& cells) {
  // "gptq-w3g128-ao" -> "w3g128": the setting methods are compared at (act-order is GPTQ's own).
  auto setting = [](const std::string& quant) {
    std::string s = quant.substr(quant.find('-') + 1);
    return s.ends_with("-ao") ? s.substr(0, s.size() - 3) : s;
  };
  std::vector<QuantErrorTable> out;
  std::vector<std::pair<std::string, std::string>> done;  // (model, setting)
  for (const CellRecord& first : cells) {
    const std::pair<std::string, std::string> group{first.model, setting(first.quant)};
    if (first.task_kind != "quant_error" || std::find(done.begin(), done.end(), group) != done.end()) continue;
    done.push_back(group);
    std::vector<std::string> linears;
    std::vector<QuantErrorColumn> cols;
    bool rtn = false;
    for (const CellRecord& c : cells) {
      if (c.task_kind != "quant_error" || std::pair{c.model, setting(c.quant)} != group) continue;
      QuantErrorColumn col{method_label(c.quant, 16), {}};
      std::vector<std::string> names;
      for (const Metric& m : c.metrics)
        if (m.name.starts_with("error@")) names.push_back(m.name.substr(6)), col.error.push_back(m.value);
      if (linears.empty()) linears = names;
      if (names != linears) continue;  // another model under the same name
      const bool is_rtn = !rtn && c.quant.starts_with("rtn-");
      cols.insert(is_rtn ? cols.begin() : cols.end(), col);
      rtn |= is_rtn;
    }
    out.push_back({group.first + ", " + group.second, quant_error_rows(linears, cols, rtn)});
  }
  return out;
}

}  // namespace ikv::exp
