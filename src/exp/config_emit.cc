// Labels of config entries, the config written back as YAML, and the data-dependent path check.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>

#include "exp/config.h"
#include "io/error.h"
#include "io/sha256.h"

namespace ikv::exp {
namespace fs = std::filesystem;

bool QuantizerSpec::needs_calibration() const {
  return method == "gptq" || method == "awq" || (method == "quarot" && weight_quant == "gptq");
}

std::string QuantizerSpec::short_label() const {
  if (!label.empty()) return label;
  if (is_fp()) return "fp";
  // Appends, not `"a" + std::to_string(...)`: GCC 12 raises a false -Wrestrict on the latter.
  std::string s = method;
  s += "-w";
  s += std::to_string(wbits);
  if (method == "quarot" && abits < 16) s += 'a', s += std::to_string(abits);
  if (group > 0) s += 'g', s += std::to_string(group);
  if (sym) s += "-sym";
  if (method == "gptq" && act_order) s += "-ao";
  if (method == "quarot" && weight_quant == "gptq") s += "-gptq";
  return s;
}

std::string IntactKVSpec::short_label() const {
  switch (kind) {
    case Kind::None: return "none";
    case Kind::Bos: return "bos";
    case Kind::Auto: return "auto";
    case Kind::Preset: return value;
    case Kind::Prompt: return "prompt-" + io::sha256_hex(value).substr(0, 8);
    case Kind::File: {
      std::string stem = fs::path(value).filename().string();
      const std::string ext = ".ikv.safetensors";
      if (stem.size() > ext.size() && stem.ends_with(ext)) stem.resize(stem.size() - ext.size());
      return "file-" + stem;
    }
    case Kind::Calibrated: return calibration.prefix + "+cal";
  }
  return "?";
}

std::string model_dir(const ModelSpec& model, const std::string& data_root) {
  if (fs::path(model.path).is_absolute() || data_root.empty()) return model.path;
  return (fs::path(data_root) / model.path).lexically_normal().string();
}

void check_paths_exist(const ExperimentConfig& config, const std::string& data_root) {
  for (const auto& m : config.models) {
    const std::string dir = model_dir(m, data_root);
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail(m.where, ": model path does not exist: ", dir);
  }
}

namespace {

std::string real(double v) {  // shortest text that reads back as the same double
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

void emit_list(YAML::Emitter& out, const std::vector<std::string>& items) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : items) out << s;
  out << YAML::EndSeq;
}

void emit_quantizer(YAML::Emitter& out, const QuantizerSpec& q) {
  if (q.is_fp() && q.label.empty()) {
    out << "fp";
    return;
  }
  out << YAML::BeginMap << YAML::Key << "method" << YAML::Value << q.method;
  if (!q.label.empty()) out << YAML::Key << "label" << YAML::Value << q.label;
  if (!q.is_fp()) {
    out << YAML::Key << "wbits" << YAML::Value << q.wbits;
    out << YAML::Key << "group" << YAML::Value << q.group;
    if (q.method != "awq") out << YAML::Key << "sym" << YAML::Value << q.sym;
    if (q.method == "gptq") out << YAML::Key << "act_order" << YAML::Value << q.act_order;
    if (q.method == "quarot") {
      out << YAML::Key << "abits" << YAML::Value << q.abits;
      out << YAML::Key << "clip_ratio" << YAML::Value << real(q.clip_ratio);
      out << YAML::Key << "weight_quant" << YAML::Value << q.weight_quant;
    }
    if (q.method != "rtn") {
      out << YAML::Key << "samples" << YAML::Value << q.samples;
      out << YAML::Key << "seq_len" << YAML::Value << q.seq_len;
      out << YAML::Key << "data" << YAML::Value << q.data;
    }
  }
  out << YAML::EndMap;
}

void emit_intactkv(YAML::Emitter& out, const IntactKVSpec& v) {
  using K = IntactKVSpec::Kind;
  switch (v.kind) {
    case K::None: out << "none"; return;
    case K::Bos: out << "bos"; return;
    case K::Auto: out << "auto"; return;
    default: break;
  }
  out << YAML::BeginMap;
  if (v.kind == K::Prompt) out << YAML::Key << "prompt" << YAML::Value << YAML::DoubleQuoted << v.value;
  if (v.kind == K::Preset) out << YAML::Key << "preset" << YAML::Value << v.value;
  if (v.kind == K::File) {
    out << YAML::Key << "file" << YAML::Value << v.value;
    if (!v.sha256.empty()) out << YAML::Key << "sha256" << YAML::Value << v.sha256;
  }
  if (v.kind == K::Calibrated) {
    const CalibrationSpec& c = v.calibration;
    out << YAML::Key << "calibrated" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "prefix" << YAML::Value << c.prefix << YAML::Key << "samples" << YAML::Value
        << c.samples;
    out << YAML::Key << "epochs" << YAML::Value << c.epochs << YAML::Key << "lr" << YAML::Value << real(c.lr);
    out << YAML::Key << "data" << YAML::Value << c.data << YAML::Key << "max_len" << YAML::Value << c.max_len;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

void emit_tasks(YAML::Emitter& out, const TaskSpecs& t) {
  out << YAML::BeginMap;
  if (t.ppl) {
    out << YAML::Key << "ppl" << YAML::Value << YAML::BeginMap << YAML::Key << "datasets" << YAML::Value;
    emit_list(out, t.ppl->datasets);
    out << YAML::Key << "ctx" << YAML::Value << t.ppl->ctx << YAML::Key << "windows" << YAML::Value
        << t.ppl->windows << YAML::EndMap;
  }
  if (t.mmlu) {
    out << YAML::Key << "mmlu" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "shots" << YAML::Value << t.mmlu->shots << YAML::Key << "subjects" << YAML::Value;
    if (t.mmlu->subjects.empty())
      out << "all";
    else
      emit_list(out, t.mmlu->subjects);
    out << YAML::Key << "limit" << YAML::Value << t.mmlu->limit << YAML::Key << "max_ctx" << YAML::Value
        << t.mmlu->max_ctx << YAML::Key << "bos" << YAML::Value << t.mmlu->bos << YAML::Key << "format"
        << YAML::Value << t.mmlu->format << YAML::EndMap;
  }
  if (t.qa) {
    out << YAML::Key << "qa" << YAML::Value << YAML::BeginMap << YAML::Key << "tasks" << YAML::Value;
    emit_list(out, t.qa->tasks);
    out << YAML::Key << "limit" << YAML::Value << t.qa->limit << YAML::Key << "bos" << YAML::Value << t.qa->bos;
    if (!t.qa->average.empty()) {
      out << YAML::Key << "average" << YAML::Value;
      emit_list(out, t.qa->average);
    }
    out << YAML::EndMap;
  }
  if (t.mse_sweep) {
    const MseSweepTask& s = *t.mse_sweep;
    out << YAML::Key << "mse_sweep" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "prefix" << YAML::Value << s.prefix << YAML::Key << "max_size" << YAML::Value
        << s.max_size;
    out << YAML::Key << "samples" << YAML::Value << s.samples << YAML::Key << "data" << YAML::Value << s.data;
    out << YAML::EndMap;
  }
  if (t.kld) {
    out << YAML::Key << "kld" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "dataset" << YAML::Value << t.kld->dataset << YAML::Key << "ctx" << YAML::Value
        << t.kld->ctx;
    out << YAML::Key << "windows" << YAML::Value << t.kld->windows << YAML::EndMap;
  }
  if (const auto& q = t.quant_error)
    out << YAML::Key << "quant_error" << YAML::Value << YAML::BeginMap << YAML::Key << "heldout" << YAML::Value
        << q->heldout << YAML::Key << "tokens" << YAML::Value << q->tokens << YAML::Key << "ctx" << YAML::Value
        << q->ctx << YAML::EndMap;
  out << YAML::EndMap;
}

}  // namespace

std::string to_yaml(const ExperimentConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  if (!c.data_root.empty()) out << YAML::Key << "data_root" << YAML::Value << c.data_root;
  if (!c.results_dir.empty()) out << YAML::Key << "results_dir" << YAML::Value << c.results_dir;
  out << YAML::Key << "threads" << YAML::Value << c.threads;
  out << YAML::Key << "seed" << YAML::Value << c.seed;
  out << YAML::Key << "models" << YAML::Value << YAML::BeginSeq;
  for (const auto& m : c.models)
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "name" << YAML::Value << m.name << YAML::Key << "path"
        << YAML::Value << m.path << YAML::Key << "dtype" << YAML::Value << m.dtype << YAML::EndMap;
  out << YAML::EndSeq;
  out << YAML::Key << "quantizers" << YAML::Value << YAML::BeginSeq;
  for (const auto& q : c.quantizers) emit_quantizer(out, q);
  out << YAML::EndSeq;
  out << YAML::Key << "kv_bits" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (int b : c.kv_bits) out << b;
  out << YAML::EndSeq;
  out << YAML::Key << "intactkv" << YAML::Value << YAML::BeginSeq;
  for (const auto& v : c.intactkv) emit_intactkv(out, v);
  out << YAML::EndSeq;
  out << YAML::Key << "tasks" << YAML::Value;
  emit_tasks(out, c.tasks);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace ikv::exp
