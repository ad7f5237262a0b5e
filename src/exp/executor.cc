#include "exp/executor.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/forward.h"
#include "eval/kld.h"
#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "exp/config.h"
#include "exp/engine_options.h"
#include "exp/variant.h"
#include "exp/intactkv_figures.h"
#include "exp/quant_error.h"
#include "intactkv/calibrate_data.h"
#include "intactkv/calibrate.h"
#include "intactkv/mse_sweep.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/data_root.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/sha256.h"

namespace fs = std::filesystem;

namespace ikv::exp {
namespace {

std::string files_digest(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return io::file_sha256_cached(path);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(path))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const auto& f : files) all += fs::path(f).filename().string() + ":" + io::file_sha256_cached(f) + ";";
  return io::sha256_hex(all);
}

}  // namespace

Executor::Executor(std::string data_root, std::string results_dir, ArtifactIndex& artifacts)
    : data_root_(std::move(data_root)), results_dir_(std::move(results_dir)), store_(artifacts) {}
Executor::~Executor() = default;

Identities data_identities(const std::string& data_root) {
  Identities ids;
  const std::string root = data_root;
  ids.model = [root](const ModelSpec& m) { return files_digest(model_dir(m, root)); };
  ids.dataset = [root](const std::string& d) {
    // A task name stands for its data files (eval::TaskSpec::files), sharegpt for its sample file;
    // anything else is a text dataset.
    std::vector<std::string> paths;
    if (d == "sharegpt") paths.push_back(intactkv::resolve_calibration_data(root, d));
    for (const eval::TaskSpec& t : eval::all_tasks())
      if (t.name == d)
        for (const std::string& f : eval::task_files(t, root)) {
          paths.push_back(io::data_file(root, f));
          io::verify_data_file(root, paths.back());
        }
    if (paths.empty()) return io::file_sha256_cached(resolve_text_dataset(root, d));
    std::string all;
    for (const auto& path : paths) all += io::file_sha256_cached(path) + ";";
    return io::sha256_hex(all);
  };
  ids.file = [](const std::string& f) { return io::file_sha256_cached(f); };
  return ids;
}

const LoadedModel& Executor::fp_model(const ModelSpec& m) {
  const std::string id = m.path + "|" + m.dtype;
  auto& slot = fp_[id];
  if (!slot) slot = std::make_unique<LoadedModel>(load_model_verified(data_root_, model_dir(m, data_root_), m.dtype));
  return *slot;
}

const model::Weights& Executor::weights_for(const Cell& cell) {
  if (cell.quant.is_fp()) return fp_model(cell.model).weights;
  auto& slot = quantized_[cell.quant_key];
  if (!slot) {
    // Quantizers read fp32 weights; the dtype applies once quantized.
    ModelSpec fp32 = cell.model;
    fp32.dtype = "fp32";
    slot = std::make_unique<model::Weights>(fp_model(fp32).weights);
    // Packed weights are an artifact: reuse the file a previous run saved under this key.
    const std::string path = results_dir_ + "/artifacts/" + cell.quant_key.substr(0, 24) + ".quant.safetensors";
    if (auto art = store_.get_artifact(cell.quant_key); art && fs::exists(art->path)) {
      quantize_or_load(*slot, fp_model(fp32), cell.quant, data_root_, cell.seed, art->path);
    } else {
      fs::create_directories(results_dir_ + "/artifacts");
      quantize_to_artifact(*slot, fp_model(fp32), cell.quant, data_root_, cell.seed, path,
                           {{"method", cell.quant.method}, {"label", cell.quant.short_label()}});
      store_.put_artifact({cell.quant_key, "quant", path, io::file_sha256(path), ""});
    }
    apply_dtype(*slot, cell.model.dtype);
  }
  return *slot;
}

const intactkv::Prefix* Executor::prefix_for(const Cell& cell) {
  using Kind = IntactKVSpec::Kind;
  const IntactKVSpec& s = cell.intactkv;
  if (s.kind == Kind::None) return nullptr;
  auto& slot = prefixes_[cell.intactkv_key];
  if (slot) return slot.get();
  const LoadedModel& fp = fp_model(cell.model);
  const model::Config& c = fp.weights.config;
  const std::string path = results_dir_ + "/artifacts/" + cell.intactkv_key.substr(0, 24) + ".ikv.safetensors";
  if (auto art = store_.get_artifact(cell.intactkv_key); art && fs::exists(art->path)) {
    slot = std::make_unique<intactkv::Prefix>(intactkv::load_prefix(art->path, c, fp.weights.fingerprint));
    return slot.get();
  }
  intactkv::Prefix p;
  if (s.kind != Kind::Calibrated) {
    p = build_intactkv_prefix(s, fp, data_root_);  // from the FP model alone (exp/variant.h)
  } else {
    // Calibrated for this cell's quantized weights and KV bits (the key says so), starting from
    // the FP prefix; ikv-calibrate's library entry point, checkpointed beside the artifact.
    intactkv::CalibrationSpec cs;
    cs.quant_label = cell.quant.short_label();
    cs.kv_bits = cell.kv_bits;
    cs.prefix = s.calibration.prefix;
    cs.data = s.calibration.data;
    cs.samples = s.calibration.samples;
    cs.epochs = s.calibration.epochs;
    cs.lr = s.calibration.lr;
    cs.max_len = s.calibration.max_len;
    cs.seed = static_cast<uint64_t>(cell.seed);
    cs.output = path;
    cs.progress = false;
    fs::create_directories(results_dir_ + "/artifacts");
    intactkv::CalibrationResult res =
        intactkv::calibrate_prefix(fp.weights, weights_for(cell), *fp.tokenizer, data_root_, cs);
    plot_calibration_loss(res.log, intactkv::calibration_stem(path), "IntactKV calibration, " + cs.quant_label);
    p = std::move(res.prefix);
    // The loss curve travels in the artifact, so a cell that loads the prefix reports it too.
    nlohmann::json loss = nlohmann::json::array();
    for (const auto& step : res.log) loss.push_back(step.loss);
    p.settings["calibration_loss"] = loss.dump();
  }
  p.settings["variant"] = s.short_label();
  fs::create_directories(results_dir_ + "/artifacts");
  intactkv::save_prefix(p, c, path);
  store_.put_artifact({cell.intactkv_key, "intactkv", path, io::file_sha256(path), ""});
  slot = std::make_unique<intactkv::Prefix>(std::move(p));
  return slot.get();
}

engine::EngineOptions Executor::engine_options(const Cell& cell) {
  engine::EngineOptions o;
  o.kv = kv_scheme(cell.kv);
  if (!cell.quant.static_scales()) return o;
  const std::string id = cell.quant_key + "|" + cell.intactkv_key;
  auto it = static_scales_.find(id);
  if (it == static_scales_.end()) {
    const auto calib = calibration_tokens(data_root_, fp_model(cell.model), cell.quant, cell.seed);
    it = static_scales_.emplace(id, make_engine_options(cell.kv, cell.quant, weights_for(cell), prefix_for(cell), calib).scales)
             .first;
  }
  o.scales = it->second;
  return o;
}

const std::vector<int32_t>& Executor::token_stream(const ModelSpec& m, const std::string& dataset) {
  const std::string id = m.path + "|" + dataset;
  auto it = streams_.find(id);
  if (it != streams_.end()) return it->second;
  const LoadedModel& fp = fp_model(m);
  const std::string text = io::read_utf8_text(resolve_text_dataset(data_root_, dataset));
  return streams_[id] = eval::perplexity_stream(*fp.tokenizer, text, fp.weights.config.bos_id);
}

CellRecord Executor::run(const Cell& cell) {
  if (splittable(cell)) return merge_parts(cell, {run_part(cell, 0, 1)});
  CellRecord rec = run_task(cell);
  if (auto loss = calibration_loss(cell)) rec.outcomes.push_back(*loss);
  return rec;
}

std::optional<ItemOutcomes> Executor::calibration_loss(const Cell& cell) {
  // Cells with a calibrated prefix carry its loss curve (for the report's figure).
  if (cell.intactkv.kind != IntactKVSpec::Kind::Calibrated) return std::nullopt;
  const intactkv::Prefix* p = prefix_for(cell);
  if (!p) return std::nullopt;
  auto it = p->settings.find("calibration_loss");
  if (it == p->settings.end()) return std::nullopt;
  ItemOutcomes o{"calibration_loss", {}};
  for (const auto& v : nlohmann::json::parse(it->second)) o.values.push_back(v.is_number() ? v.get<double>() : NAN);
  return o;
}

CellRecord Executor::run_task(const Cell& cell) {
  const std::string kind = task_kind(cell.task);
  if (kind == "mse_sweep") return run_mse_sweep(cell);
  if (kind == "kld") return run_kld(cell);
  if (kind == "quant_error") return run_quant_error(cell);
  fail(cell.describe(), ": unknown task kind ", kind);
}

CellRecord Executor::run_mse_sweep(const Cell& cell) {
  const auto& t = std::get<MseSweepTask>(cell.task);
  const LoadedModel& fp = fp_model(cell.model);
  const model::Config& c = fp.weights.config;
  std::vector<int32_t> prefix = intactkv::prefix_tokens(t.prefix == "bos" ? "bos" : t.prefix, *fp.tokenizer, c.bos_id);
  const std::string dataset = t.data == "sharegpt" ? "wikitext2" : t.data;
  const std::vector<int32_t>& stream = token_stream(cell.model, dataset);
  const int64_t len = 256;
  std::vector<std::vector<int32_t>> samples;
  for (int64_t i = 0; i < t.samples && 1 + (i + 1) * len < static_cast<int64_t>(stream.size()); ++i) {
    std::vector<int32_t> s = prefix;
    s.insert(s.end(), stream.begin() + 1 + i * len, stream.begin() + 1 + (i + 1) * len);
    samples.push_back(std::move(s));
  }
  engine::Engine fe(fp.weights), qe(weights_for(cell), engine_options(cell));
  const int64_t max_size = std::min<int64_t>(t.max_size, prefix.size());
  intactkv::MseSweepResult r = intactkv::mse_sweep(fe, qe, prefix, samples, max_size, cell.kv_bits);
  CellRecord rec;
  for (size_t i = 0; i < r.sizes.size(); ++i) {
    rec.metrics.push_back({"mse_last@" + std::to_string(r.sizes[i]), r.last_layer_mse[i], NAN, r.tokens});
    rec.metrics.push_back({"mse_mean@" + std::to_string(r.sizes[i]), r.mean_layer_mse[i], NAN, r.tokens});
  }
  rec.outcomes.push_back({"mse_last", r.last_layer_mse});
  return rec;
}

CellRecord Executor::run_kld(const Cell& cell) {
  const auto& t = std::get<KldTask>(cell.task);
  const intactkv::Prefix* prefix = prefix_for(cell);
  engine::Engine fe(fp_model(cell.model).weights), qe(weights_for(cell), engine_options(cell));
  eval::KldOptions opt;
  opt.ctx = t.ctx;
  opt.windows = t.windows;
  opt.kv_bits = cell.kv_bits;
  eval::KldResult r = eval::kl_divergence(fe, qe, token_stream(cell.model, t.dataset), opt, prefix);
  CellRecord rec;
  rec.metrics.push_back({"kld", r.mean_kld, r.stderr_kld, r.tokens});
  rec.metrics.push_back({"top1_agreement", r.top1_agreement, NAN, r.tokens});
  rec.outcomes.push_back({"window_kld", r.window_kld});
  return rec;
}

CellRecord Executor::run_quant_error(const Cell& cell) {
  // The study of `ikv-eval quant-error` for this one quantizer, on the fp32 weights it quantizes
  // itself (the packed artifact lacks AWQ's folded scales, which the error undoes).
  ModelSpec fp32 = cell.model;
  fp32.dtype = "fp32";
  return quant_error_record(
      exp::run_quant_error(data_root_, fp_model(fp32), cell.quant, std::get<QuantErrorTask>(cell.task), cell.seed));
}

}  // namespace ikv::exp
