#include "exp/plan.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "exp/hash.h"
#include "io/error.h"

namespace ikv::exp {
using nlohmann::json;

namespace {

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};

std::string need(const std::function<std::string(const std::string&)>& f, const char* what,
                 const std::string& arg) {
  if (!f) fail("plan: no ", what, " checksum source for \"", arg, "\"");
  return f(arg);
}

std::string model_identity(const Identities& ids, const ModelSpec& m) {
  if (!ids.model) fail("plan: no model fingerprint source for \"", m.name, "\"");
  return ids.model(m);
}

json model_json(const ModelSpec& m, const Identities& ids) {
  return {{"fingerprint", model_identity(ids, m)}, {"dtype", m.dtype}};
}

// Only the settings a method reads, so an unused default never splits a key.
json quant_json(const QuantizerSpec& q, const Identities& ids) {
  json j = {{"method", q.method}};
  if (q.is_fp()) return j;
  j["wbits"] = q.wbits;
  j["group"] = q.group;
  if (q.method != "awq") j["sym"] = q.sym;
  if (q.method == "gptq") j["act_order"] = q.act_order;
  if (q.head_bits < 16) j["head_bits"] = q.head_bits;  // absent when FP: older keys stay as they were
  if (q.method == "quarot") {
    j["abits"] = q.abits;
    j["clip_ratio"] = q.clip_ratio;
    j["weight_quant"] = q.weight_quant;
  }
  // Settings added later enter a key only when set, so stored cells stay found.
  if (q.keep_super_weights) j["keep_super_weights"] = true;
  if (q.static_scales()) j["scales"] = q.scales;
  if (q.reads_calibration_data()) {
    j["samples"] = q.samples;
    j["seq_len"] = q.seq_len;
    j["data"] = {{"name", q.data}, {"checksum", need(ids.dataset, "dataset", q.data)}};
  }
  return j;
}

json intactkv_json(const IntactKVSpec& v, const Identities& ids) {
  using K = IntactKVSpec::Kind;
  switch (v.kind) {
    case K::None: return {{"kind", "none"}};
    case K::Bos: return {{"kind", "bos"}};
    case K::Auto: return {{"kind", "auto"}};
    case K::Prompt: return {{"kind", "prompt"}, {"text", v.value}};
    case K::Preset: return {{"kind", "preset"}, {"name", v.value}};
    case K::File:  // the file's content is its identity, wherever it lives
      return {{"kind", "file"},
              {"sha256", v.sha256.empty() ? need(ids.file, "IntactKV file", v.value) : v.sha256}};
    case K::Calibrated: {
      const CalibrationSpec& c = v.calibration;
      return {{"kind", "calibrated"},
              {"prefix", c.prefix},
              {"samples", c.samples},
              {"epochs", c.epochs},
              {"lr", c.lr},
              {"max_len", c.max_len},
              {"data", {{"name", c.data}, {"checksum", need(ids.dataset, "dataset", c.data)}}}};
    }
  }
  return {};
}

json task_json(const TaskUnit& task, const Identities& ids) {
  auto data = [&](const std::string& name) {
    return json{{"name", name}, {"checksum", need(ids.dataset, "dataset", name)}};
  };
  return std::visit(
      Overloaded{
          [&](const PplUnit& t) -> json {
            return {{"kind", "ppl"}, {"data", data(t.dataset)}, {"ctx", t.ctx}, {"windows", t.windows}};
          },
          // Settings added after results were stored enter a key only when they differ from the
          // behaviour those results had (<bos> always, the paper's MMLU prompt), so stored cells
          // stay found. MMLU's shot-dropping limit is always keyed: before it existed the limit
          // was the model's context, which differs from 2048 for 4096-context models.
          [&](const QaUnit& t) -> json {
            json j = {{"kind", "qa"}, {"data", data(t.task)}, {"limit", t.limit}};
            if (t.bos != "always") j["bos"] = t.bos;
            return j;
          },
          [&](const MmluTask& t) -> json {
            json j = {{"kind", "mmlu"},     {"data", data("mmlu")}, {"shots", t.shots},
                      {"subjects", t.subjects}, {"limit", t.limit},     {"max_ctx", t.max_ctx}};
            if (t.bos != "always") j["bos"] = t.bos;
            if (t.format != "paper") j["format"] = t.format;
            return j;
          },
          [&](const MseSweepTask& t) -> json {
            return {{"kind", "mse_sweep"},
                    {"data", data(t.data)},
                    {"prefix", t.prefix},
                    {"max_size", t.max_size},
                    {"samples", t.samples}};
          },
          [&](const KldTask& t) -> json {
            return {{"kind", "kld"}, {"data", data(t.dataset)}, {"ctx", t.ctx}, {"windows", t.windows}};
          },
          [&](const QuantErrorTask& t) -> json {
            return {{"kind", "quant_error"}, {"data", data(t.heldout)}, {"tokens", t.tokens}, {"ctx", t.ctx}};
          },
      },
      task);
}

// Fingerprinting a model or dataset may read gigabytes: ask once per distinct argument.
Identities memoized(const Identities& ids) {
  using Cache = std::map<std::string, std::string>;
  auto wrap =
      [](std::function<std::string(const std::string&)> f) -> std::function<std::string(const std::string&)> {
    if (!f) return f;
    return [f, cache = std::make_shared<Cache>()](const std::string& arg) {
      auto it = cache->find(arg);
      return it != cache->end() ? it->second : (*cache)[arg] = f(arg);
    };
  };
  Identities out{nullptr, wrap(ids.dataset), wrap(ids.file)};
  if (ids.model)
    out.model = [f = ids.model, cache = std::make_shared<Cache>()](const ModelSpec& m) {
      auto it = cache->find(m.path);
      return it != cache->end() ? it->second : (*cache)[m.path] = f(m);
    };
  return out;
}

std::vector<TaskUnit> per_variant_units(const TaskSpecs& t) {
  std::vector<TaskUnit> units;
  if (t.ppl)
    for (const auto& d : t.ppl->datasets) units.push_back(PplUnit{d, t.ppl->ctx, t.ppl->windows});
  if (t.qa)
    for (const auto& name : t.qa->tasks) units.push_back(QaUnit{name, t.qa->limit, t.qa->bos});
  if (t.mmlu) units.push_back(*t.mmlu);
  if (t.kld) units.push_back(*t.kld);
  return units;
}

std::string human(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.1fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

// The identities as make_plan asks for them, each answer also written to `seen` under its prefix.
Identities recorded(const Identities& ids, std::map<std::string, std::string>& seen) {
  auto wrap = [&seen](std::function<std::string(const std::string&)> f, std::string prefix)
      -> std::function<std::string(const std::string&)> {
    if (!f) return f;
    return [f, prefix, &seen](const std::string& arg) { return seen[prefix + arg] = f(arg); };
  };
  Identities out{nullptr, wrap(ids.dataset, "data:"), wrap(ids.file, "file:")};
  if (ids.model)
    out.model = [f = ids.model, &seen](const ModelSpec& m) { return seen["model:" + m.name] = f(m); };
  return out;
}

}  // namespace

std::string task_kind(const TaskUnit& task) {
  static const char* kinds[] = {"ppl", "qa", "mmlu", "mse_sweep", "kld", "quant_error"};
  return kinds[task.index()];
}

std::string task_label(const TaskUnit& task) {
  if (const auto* p = std::get_if<PplUnit>(&task)) {
    const bool is_path = p->dataset.find_first_of("/.") != std::string::npos;
    return is_path ? std::filesystem::path(p->dataset).stem().string() : p->dataset;
  }
  if (const auto* q = std::get_if<QaUnit>(&task)) return q->task + (q->bos == "never" ? "/no-bos" : "");
  if (const auto* m = std::get_if<MmluTask>(&task))
    return std::string("mmlu") + (m->bos == "never" ? "/no-bos" : "") + (m->format != "paper" ? "/" + m->format : "");
  return task_kind(task);
}

std::string Cell::describe() const {
  return model.name + " " + quant_label() + " kv" + std::to_string(kv_bits) + " " + intactkv.short_label() + " " +
         task_label(task);
}

std::string Cell::quant_label() const { return exp::quant_label(quant, kv); }

std::string quant_artifact_key(const ModelSpec& model, const QuantizerSpec& quant, const Identities& ids,
                               int64_t seed) {
  if (quant.is_fp()) return "";
  json j = {{"artifact", "quant"},
            {"engine", kEngineVersion},
            {"model", model_json(model, ids)},
            {"quant", quant_json(quant.weights_only(), ids)}};
  if (quant.needs_calibration()) j["seed"] = seed;  // calibration samples are drawn with it
  return content_key(j);
}

std::string intactkv_artifact_key(const ModelSpec& model, const QuantizerSpec& quant, int kv_bits,
                                  const IntactKVSpec& intactkv, const Identities& ids, int64_t seed) {
  if (intactkv.kind == IntactKVSpec::Kind::None) return "";
  json j = {{"artifact", "intactkv"},
            {"engine", kEngineVersion},
            {"model", model_json(model, ids)},
            {"intactkv", intactkv_json(intactkv, ids)}};
  if (intactkv.kind == IntactKVSpec::Kind::Calibrated) {  // trained through the quantized model
    j["quant"] = quant_json(quant, ids);
    j["kv_bits"] = kv_bits;
    j["seed"] = seed;
  }
  return content_key(j);
}

// The KV schemes a kv_bits entry runs: kv_quant × kv_protect for a quantized cache, the default
// alone for kv_bits 16 (nothing to quantize). Sink protection is a rule of the per-token quantizer:
// KIVI entries are not paired with it.
static std::vector<KvQuantSpec> kv_schemes(const ExperimentConfig& config, int kv_bits) {
  if (kv_bits >= 16) return {KvQuantSpec{}};
  std::vector<KvQuantSpec> out;
  for (const KvQuantSpec& k : config.kv_quant)
    for (const std::string& protect : config.kv_protect) {
      if (k.keys != "per_token" && protect != "none") continue;
      KvQuantSpec s = k;
      s.protect = protect;
      out.push_back(s);
    }
  return out;
}

// Expansion rules:
//  - Loops nest model > quantizer > kv_bits > IntactKV variant > task unit, so cells that share
//    a quantized model (and an IntactKV prefix) run one after another.
//  - A task unit is one ppl dataset, one QA task, mmlu (one cell) or kld (one cell).
//  - The fp quantizer with kv_bits 16 runs only the "none" variant: at full precision IntactKV
//    hands the model exactly the KV cache it would compute itself, so every variant would repeat
//    the baseline. (fp with a quantized KV cache keeps all variants: the prefix then matters.)
//  - kld measures divergence from the FP model, identically 0 for fp with kv_bits 16: skipped.
//  - mse_sweep is one cell per model x lossy (quantizer, kv_bits), not per variant: it sweeps
//    the IntactKV prefix size itself. It is placed after that combination's other cells.
//  - quant_error is one cell per model x rtn/gptq/awq quantizer, labelled kv16 and none: it
//    measures the weights alone. It is placed after that quantizer's other cells.
//  - Cells whose key already occurs (a setting listed twice) are dropped.
Plan make_plan(const ExperimentConfig& config, const Identities& raw_ids) {
  Plan plan{config, {}, {}};
  const Identities ids = recorded(memoized(raw_ids), plan.identities);
  std::set<std::string> seen;
  const std::vector<TaskUnit> units = per_variant_units(config.tasks);

  auto add = [&](const ModelSpec& m, const QuantizerSpec& q, int kv, const IntactKVSpec& v,
                 const TaskUnit& task, const KvQuantSpec& kq = {}) {
    Cell cell;
    cell.index = plan.cells.size();
    cell.model = m, cell.quant = q, cell.kv_bits = kv, cell.kv = kq, cell.intactkv = v, cell.task = task;
    cell.seed = config.seed;
    json key = {
        {"engine", kEngineVersion},    {"seed", config.seed}, {"model", model_json(m, ids)},
        {"quant", quant_json(q, ids)}, {"kv_bits", kv},       {"intactkv", intactkv_json(v, ids)},
        {"task", task_json(task, ids)}};
    if (!kq.is_default())
      key["kv_quant"] = {{"keys", kq.keys}, {"residual", kq.residual}, {"group", kq.group}, {"protect", kq.protect}};
    cell.key = content_key(key);
    if (!seen.insert(cell.key).second) return;
    if (!std::holds_alternative<QuantErrorTask>(task)) cell.quant_key = quant_artifact_key(m, q, ids, config.seed);
    cell.intactkv_key = intactkv_artifact_key(m, q, kv, v, ids, config.seed);
    cell.est_cost = estimate_tokens(cell);
    plan.cells.push_back(std::move(cell));
  };

  for (const auto& m : config.models)
    for (const auto& q : config.quantizers) {
      for (int kv : config.kv_bits) {
        const bool lossless = q.is_fp() && kv == 16;
        for (const KvQuantSpec& scheme : kv_schemes(config, kv))
          for (const auto& v : config.intactkv) {
            if (lossless && v.kind != IntactKVSpec::Kind::None) continue;
            for (const auto& task : units)
              if (!(lossless && std::holds_alternative<KldTask>(task))) add(m, q, kv, v, task, scheme);
          }
            if (config.tasks.mse_sweep && !lossless) add(m, q, kv, IntactKVSpec{}, *config.tasks.mse_sweep);
      }
      if (config.tasks.quant_error && has_quant_error(q)) add(m, q, 16, IntactKVSpec{}, *config.tasks.quant_error);
    }
  return plan;
}

// Token counts of the stock datasets (LLaMA tokenizer, rounded) and QA sizes (items x choices)
// and typical request lengths; only ratios matter for the ETA.
double estimate_tokens(const Cell& cell) {
  auto stream_tokens = [](const std::string& dataset, int ctx, int windows) {
    if (windows > 0) return double(windows) * ctx;
    return dataset == "ptb" ? 100e3 : 340e3;
  };
  return std::visit(
      Overloaded{
          [&](const PplUnit& t) { return stream_tokens(t.dataset, t.ctx, t.windows); },
          [&](const QaUnit& t) {
            static const std::map<std::string, std::pair<double, double>> sizes = {
                {"arc_easy", {2376, 4}},  {"arc_challenge", {1172, 4}}, {"boolq", {3270, 2}},
                {"openbookqa", {500, 4}}, {"winogrande", {1267, 2}},    {"hellaswag", {10042, 4}},
                {"piqa", {1838, 2}},      {"lambada_openai", {5153, 1}}};
            auto it = sizes.find(t.task);
            const auto [items, choices] = it != sizes.end() ? it->second : std::pair{1000.0, 4.0};
            return (t.limit > 0 ? std::min<double>(t.limit, items) : items) * choices * 64;
          },
          [&](const MmluTask& t) {
            double items = t.subjects.empty() ? 14042 : 14042.0 / 57 * t.subjects.size();
            if (t.limit > 0)
              items = std::min(items, double(t.limit) * (t.subjects.empty() ? 57 : t.subjects.size()));
            return items * (t.shots + 1) * 100;
          },
          [&](const MseSweepTask& t) { return double(t.samples) * t.max_size * 512; },
          [&](const KldTask& t) { return 2 * stream_tokens(t.dataset, t.ctx, t.windows); },
          [&](const QuantErrorTask& t) {  // the held-out pass and the quantizer's calibration
            const QuantizerSpec& q = cell.quant;
            return double(t.tokens) + (q.needs_calibration() ? double(q.samples) * q.seq_len : 0.0);
          },
      },
      cell.task);
}

namespace {

std::string human_seconds(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else std::snprintf(buf, sizeof buf, "%.0f s", s);
  return buf;
}

std::string human_bytes(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, b >= 1e9 ? "%.1f GB" : "%.0f MB", b >= 1e9 ? b / 1e9 : b / 1e6);
  return buf;
}

}  // namespace

std::string render_plan(const Plan& plan, const CostFn& cost,
                        const std::function<bool(const std::string&)>& is_done, const EstimateFn& estimate) {
  std::vector<std::vector<std::string>> rows = {
      {"#", "model", "quant", "kv", "intactkv", "task", "key", "est"}};
  if (estimate) rows[0].insert(rows[0].end(), {"time", "peak mem"});
  if (is_done) rows[0].push_back("status");
  const size_t numbers_end = estimate ? 10 : 8;  // est, time and peak mem are right-aligned numbers
  double total = 0, todo = 0, seconds = 0, todo_seconds = 0, peak = 0;
  size_t done_count = 0, too_big = 0;
  std::set<std::string> artifacts;  // made by the first cell that needs them
  for (const auto& c : plan.cells) {
    const double est = cost ? cost(c) : 0;
    const bool done = is_done && is_done(c.key);
    total += est;
    if (!done) todo += est;
    done_count += done;
    rows.push_back({std::to_string(c.index + 1), c.model.name, c.quant_label(),
                    std::to_string(c.kv_bits), c.intactkv.short_label(), task_label(c.task),
                    c.key.substr(0, 12), human(est)});
    if (estimate) {
      const CellEstimate e = estimate(c);
      double s = e.seconds;
      if (e.quant_seconds > 0 && artifacts.insert("q:" + c.quant_key).second) s += e.quant_seconds;
      if (e.prefix_seconds > 0 && artifacts.insert("p:" + c.intactkv_key).second) s += e.prefix_seconds;
      seconds += s;
      if (!done) todo_seconds += s;
      peak = std::max(peak, e.peak_bytes);
      too_big += !e.fits;
      rows.back().push_back(s > 0 ? human_seconds(s) : "?");
      rows.back().push_back(human_bytes(e.peak_bytes) + (e.fits ? "" : " too big"));
    }
    if (is_done) rows.back().push_back(done ? "done" : "todo");
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  std::ostringstream os;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      const std::string pad(width[i] - r[i].size(), ' ');
      const bool right = i == 0 || i == 3 || (i >= 7 && i < numbers_end);
      line += (right ? pad + r[i] : r[i] + pad) + (i + 1 < r.size() ? "  " : "");
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    os << line << "\n";
  }
  os << plan.cells.size() << " cells, est " << human(total);
  if (estimate) os << " tokens, " << (seconds > 0 ? human_seconds(seconds) : "time ?") << ", peak " << human_bytes(peak);
  if (is_done)
    os << "; " << done_count << " done, " << plan.cells.size() - done_count << " to run (est " << human(todo)
       << (estimate && todo_seconds > 0 ? ", " + human_seconds(todo_seconds) : std::string()) << ")";
  if (too_big) os << "; " << too_big << " cell(s) will not fit in memory";
  os << "\n";
  return os.str();
}

}  // namespace ikv::exp
