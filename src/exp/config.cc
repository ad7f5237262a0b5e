// The config schema: YamlNode (already merged across `extends`) -> ExperimentConfig.
#include "exp/config.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "exp/rules.h"
#include "exp/schema_check.h"
#include "exp/yaml_tree.h"
#include "io/sha256.h"

namespace ikv::exp {
namespace fs = std::filesystem;
namespace {

using Kind = YamlNode::Kind;

const std::vector<std::string> kTopKeys = {"data_root", "results_dir", "threads",    "seed",        "models",
                                           "quantizers", "kv_bits",    "intactkv",   "kv_quant", "kv_protect",
                                           "ci_baseline", "tasks"};
const std::vector<std::string> kIntactKVWords = {"none", "bos", "auto", "system", "outliers"};
const std::vector<std::string> kIntactKVForms = {"prompt", "preset", "file", "calibrated"};

// Settings each method reads; anything else in its map is an unknown key.
std::vector<std::string> quantizer_keys(const std::string& method) {
  std::vector<std::string> keys = {"method", "label"};
  if (method != "fp") keys.push_back("head_bits");
  auto add = [&](std::initializer_list<const char*> more) {
    keys.insert(keys.end(), more.begin(), more.end());
  };
  if (method == "rtn") add({"wbits", "group", "sym", "keep_super_weights", "scales", "samples", "seq_len", "data"});
  if (method == "gptq") add({"wbits", "group", "sym", "act_order", "scales", "samples", "seq_len", "data"});
  if (method == "awq") add({"wbits", "group", "scales", "samples", "seq_len", "data"});
  if (method == "quarot")
    add({"wbits", "abits", "group", "sym", "clip_ratio", "weight_quant", "scales", "samples", "seq_len", "data"});
  return keys;
}

using namespace rules;

// A path written in a config is relative to the file that wrote it.
std::string relative_to(const YamlNode& n, const std::string& path) {
  if (fs::path(path).is_absolute()) return path;
  return (fs::path(n.file).parent_path() / path).lexically_normal().string();
}

bool looks_like_path(const std::string& s) { return s.find_first_of("/.") != std::string::npos; }

void check_dataset(SchemaChecker& c, const YamlNode& at, const std::string& name) {
  if (looks_like_path(name) ||
      std::find(kNamedDatasets.begin(), kNamedDatasets.end(), name) != kNamedDatasets.end())
    return;
  c.problem(at, "unknown dataset \"" + name + "\"" + did_you_mean(name, kNamedDatasets) +
                    "; expected wikitext2, ptb, sharegpt or a file path");
}

void read_dataset(SchemaChecker& c, const YamlNode& map, const char* key, std::string& out) {
  const YamlNode* n = map.find(key);
  c.read(map, key, out);
  if (n) check_dataset(c, *n, out);
}

// A setting that must be one of `choices`.
void read_choice(SchemaChecker& c, const YamlNode& map, const char* key, std::string& out,
                 const std::vector<std::string>& choices) {
  const YamlNode* n = map.find(key);
  if (!n) return;
  c.read(map, key, out);
  if (std::find(choices.begin(), choices.end(), out) != choices.end()) return;
  std::string list;
  for (const auto& ch : choices) list += (list.empty() ? "" : " or ") + ch;
  c.problem(*n, std::string(key) + " must be " + list + ", got '" + out + "'" + did_you_mean(out, choices));
}

// A list, or a single item standing for a one-element list.
std::vector<const YamlNode*> items_of(const YamlNode& n) {
  std::vector<const YamlNode*> out;
  if (n.kind == Kind::Sequence)
    for (const auto& item : n.items) out.push_back(&item);
  else
    out.push_back(&n);
  return out;
}

// A list of QA task names (a single name is a one-element list); unknown names are problems.
std::vector<std::string> qa_task_names(SchemaChecker& c, const YamlNode& n) {
  std::vector<std::string> names;
  for (const YamlNode* item : items_of(n)) {
    auto name = c.string(*item);
    if (!name) continue;
    if (std::find(kQaTasks.begin(), kQaTasks.end(), *name) == kQaTasks.end())
      c.problem(*item, "unknown QA task \"" + *name + "\"" + did_you_mean(*name, kQaTasks));
    else
      names.push_back(*name);
  }
  return names;
}

ModelSpec parse_model(SchemaChecker& c, const YamlNode& n) {
  ModelSpec m;
  m.where = n.where();
  if (n.kind == Kind::Scalar) {
    m.path = n.scalar;  // `- models/testbed-26M` is short for {path: models/testbed-26M}
  } else if (c.check_keys(n, {"name", "path", "dtype"}, "model")) {
    if (c.field(n, "path", true)) c.read(n, "path", m.path);
    c.read(n, "name", m.name);
    c.read(n, "dtype", m.dtype);
    if (!is_dtype(m.dtype))
      c.problem(*n.find("dtype"), "dtype must be fp32, bf16 or q8, got '" + m.dtype + "'");
  }
  if (m.name.empty()) {
    fs::path p = fs::path(m.path).lexically_normal();
    m.name = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
  }
  return m;
}

QuantizerSpec parse_quantizer(SchemaChecker& c, const YamlNode& n) {
  QuantizerSpec q;
  if (n.kind == Kind::Scalar) {
    if (n.scalar != "fp")
      c.problem(n, "expected \"fp\" or a map {method: ...}, got " + SchemaChecker::shown(n));
    return q;
  }
  if (n.kind != Kind::Map) {
    c.problem(n, "expected \"fp\" or a map {method: ...}, got " + SchemaChecker::shown(n));
    return q;
  }
  const YamlNode* method = c.field(n, "method", true);
  if (!method) return q;
  c.read(n, "method", q.method);
  if (std::find(kMethods.begin(), kMethods.end(), q.method) == kMethods.end()) {
    c.problem(*method, "unknown quantization method \"" + q.method + "\"" + did_you_mean(q.method, kMethods) +
                           "; expected fp, rtn, gptq, awq or quarot");
    return q;
  }
  c.check_keys(n, quantizer_keys(q.method), q.method + " quantizer");
  c.read(n, "label", q.label);
  if (q.is_fp()) return q;
  if (q.method == "quarot") q.group = -1;  // QuaRot quantizes weights per output channel
  if (c.field(n, "wbits", true)) c.read(n, "wbits", q.wbits, kBits);
  c.read(n, "group", q.group, kGroup);
  c.read(n, "sym", q.sym);
  c.read(n, "act_order", q.act_order);
  c.read(n, "abits", q.abits, kBitsOrOff);
  c.read(n, "clip_ratio", q.clip_ratio, kClip);
  c.read(n, "weight_quant", q.weight_quant);
  c.read(n, "head_bits", q.head_bits, kBitsOrOff);
  if (q.weight_quant != "rtn" && q.weight_quant != "gptq")
    c.problem(*n.find("weight_quant"), "weight_quant must be rtn or gptq, got '" + q.weight_quant + "'");
  c.read(n, "keep_super_weights", q.keep_super_weights);
  read_choice(c, n, "scales", q.scales, {"dynamic", "static"});
  c.read(n, "samples", q.samples, kSamples);
  c.read(n, "seq_len", q.seq_len, kSeqLen);
  read_dataset(c, n, "data", q.data);
  return q;
}

// `per_token` (the default), or {keys: per_channel_prerope, values: per_token, residual: R, group: G}.
KvQuantSpec parse_kv_quant(SchemaChecker& c, const YamlNode& n) {
  KvQuantSpec k;
  if (n.kind == Kind::Scalar) {
    if (n.scalar != "per_token")
      c.problem(n, "kv_quant must be per_token or a map {keys: per_channel_prerope, values: per_token, residual: N}, got " +
                       SchemaChecker::shown(n));
    return k;
  }
  if (!c.check_keys(n, {"keys", "values", "residual", "group"}, "kv_quant")) return k;
  read_choice(c, n, "keys", k.keys, kKeyQuant);
  std::string values = "per_token";
  read_choice(c, n, "values", values, {"per_token"});
  c.read(n, "residual", k.residual, at_least(0));
  c.read(n, "group", k.group, at_least(1));
  if (k.keys == "per_token" && (n.find("residual") || n.find("group")))
    c.problem(n, "kv_quant: residual and group apply to keys: per_channel_prerope");
  return k;
}

IntactKVSpec parse_intactkv(SchemaChecker& c, const YamlNode& n) {
  using K = IntactKVSpec::Kind;
  IntactKVSpec v;
  if (n.kind == Kind::Scalar) {
    if (n.scalar == "none")
      v.kind = K::None;
    else if (n.scalar == "bos")
      v.kind = K::Bos;
    else if (n.scalar == "auto")
      v.kind = K::Auto;
    else if (n.scalar == "system" || n.scalar == "outliers")  // intactkv/prefix_spec.h, outlier_prefix.h
      v.kind = K::Preset, v.value = n.scalar;
    else
      c.problem(n, "unknown IntactKV variant \"" + n.scalar + "\"" + did_you_mean(n.scalar, kIntactKVWords) +
                       "; expected none, bos, auto, system, outliers or a map with prompt, preset, file or calibrated");
    return v;
  }
  if (!c.check_keys(n, {"prompt", "preset", "file", "sha256", "calibrated"}, "IntactKV variant")) return v;
  int forms = 0;
  for (const auto& form : kIntactKVForms) forms += n.find(form) ? 1 : 0;
  if (forms != 1) {
    c.problem(n, "an IntactKV variant needs exactly one of prompt, preset, file, calibrated");
    return v;
  }
  if (n.find("prompt")) v.kind = K::Prompt, c.read(n, "prompt", v.value);
  if (n.find("preset")) v.kind = K::Preset, c.read(n, "preset", v.value);
  if (n.find("file")) v.kind = K::File, c.read(n, "file", v.value);
  if (const YamlNode* sha = n.find("sha256")) {
    c.read(n, "sha256", v.sha256);
    const bool hex =
        v.sha256.size() == 64 && std::all_of(v.sha256.begin(), v.sha256.end(),
                                             [](unsigned char ch) { return std::isxdigit(ch) != 0; });
    if (v.kind != K::File)
      c.problem(*sha, "sha256 applies only to {file: ...}");
    else if (!hex)
      c.problem(*sha, "sha256 must be 64 hex digits");
  }
  if (const YamlNode* cal = n.find("calibrated")) {
    v.kind = K::Calibrated;
    if (cal->kind == Kind::Null) return v;  // `calibrated:` alone = the reference recipe
    if (!c.check_keys(*cal, {"prefix", "samples", "epochs", "lr", "data", "max_len"}, "calibrated")) return v;
    CalibrationSpec& s = v.calibration;
    c.read(*cal, "prefix", s.prefix);
    c.read(*cal, "samples", s.samples, kSamples);
    c.read(*cal, "epochs", s.epochs, at_least(1));
    c.read(*cal, "lr", s.lr, kPositiveReal);
    read_dataset(c, *cal, "data", s.data);
    c.read(*cal, "max_len", s.max_len, kSeqLen);
  }
  return v;
}

// A task's settings map; `ppl:` with nothing after it means "the defaults".
bool task_map(SchemaChecker& c, const YamlNode& n, const std::vector<std::string>& keys,
              const std::string& what) {
  return n.kind == Kind::Null || c.check_keys(n, keys, what);
}

void parse_tasks(SchemaChecker& c, const YamlNode& n, TaskSpecs& t) {
  if (!c.check_keys(n, {"ppl", "mmlu", "qa", "mse_sweep", "kld", "quant_error"}, "tasks")) return;
  if (n.entries.empty()) c.problem(n, "tasks must name at least one task");
  if (const YamlNode* p = n.find("ppl"); p && task_map(c, *p, {"datasets", "ctx", "windows"}, "ppl")) {
    PplTask& s = t.ppl.emplace();
    if (const YamlNode* d = p->find("datasets")) {
      if (auto names = c.strings(*d)) {
        if (names->empty()) c.problem(*d, "datasets must name at least one dataset");
        s.datasets = *names;
        for (size_t i = 0; i < names->size(); ++i) check_dataset(c, *items_of(*d)[i], (*names)[i]);
      }
    }
    c.read(*p, "ctx", s.ctx, kCtx);
    c.read(*p, "windows", s.windows, kCount);
  }
  if (const YamlNode* p = n.find("mmlu");
      p && task_map(c, *p, {"shots", "subjects", "limit", "max_ctx", "bos", "format"}, "mmlu")) {
    MmluTask& s = t.mmlu.emplace();
    c.read(*p, "shots", s.shots, kCount);
    c.read(*p, "max_ctx", s.max_ctx, kCount);
    read_choice(c, *p, "bos", s.bos, kBosPolicies);
    read_choice(c, *p, "format", s.format, kMmluFormats);
    if (const YamlNode* subjects = p->find("subjects"); subjects && !(subjects->scalar == "all")) {
      if (auto names = c.strings(*subjects)) s.subjects = *names;
      if (s.subjects.empty()) c.problem(*subjects, "subjects must be all or a list of subject names");
    }
    c.read(*p, "limit", s.limit, kCount);
  }
  if (const YamlNode* p = n.find("qa"); p && task_map(c, *p, {"tasks", "limit", "bos", "average"}, "qa")) {
    QaTask& s = t.qa.emplace();
    read_choice(c, *p, "bos", s.bos, kBosPolicies);
    if (const YamlNode* avg = p->find("average"); avg && avg->scalar != "paper") {
      s.average = qa_task_names(c, *avg);
      if (s.average.empty()) c.problem(*avg, "average must be paper or a list of QA tasks");
    }
    if (const YamlNode* names = p->find("tasks"); names && names->scalar != "all") {
      s.tasks = qa_task_names(c, *names);
      if (names->kind == Kind::Sequence && names->items.empty())
        c.problem(*names, "qa tasks must not be empty");
    }
    c.read(*p, "limit", s.limit, kCount);
  }
  if (const YamlNode* p = n.find("mse_sweep");
      p && task_map(c, *p, {"prefix", "max_size", "samples", "data"}, "mse_sweep")) {
    MseSweepTask& s = t.mse_sweep.emplace();
    c.read(*p, "prefix", s.prefix);
    c.read(*p, "max_size", s.max_size, at_least(1));
    c.read(*p, "samples", s.samples, kSamples);
    read_dataset(c, *p, "data", s.data);
  }
  if (const YamlNode* p = n.find("kld"); p && task_map(c, *p, {"dataset", "ctx", "windows"}, "kld")) {
    KldTask& s = t.kld.emplace();
    read_dataset(c, *p, "dataset", s.dataset);
    c.read(*p, "ctx", s.ctx, kCtx);
    c.read(*p, "windows", s.windows, kCount);
  }
  if (const YamlNode* p = n.find("quant_error"); p && task_map(c, *p, {"heldout", "tokens", "ctx"}, "quant_error")) {
    QuantErrorTask& s = t.quant_error.emplace();  // the rules of `ikv-eval quant-error`'s flags
    read_dataset(c, *p, "heldout", s.heldout);
    c.read(*p, "tokens", s.tokens, kSamples);
    c.read(*p, "ctx", s.ctx, kSeqLen);
  }
}

// A list setting that must not be empty; `one` parses an item.
template <typename T, typename Parse>
void parse_list(SchemaChecker& c, const YamlNode& root, const char* key, std::vector<T>& out, Parse one) {
  const YamlNode* n = root.find(key);
  if (!n) return;
  out.clear();
  for (const YamlNode* item : items_of(*n)) out.push_back(one(*item));
  if (n->kind == Kind::Sequence && n->items.empty())
    c.problem(*n, std::string(key) + " must list at least one entry");
}

ExperimentConfig build(SchemaChecker& c, const YamlNode& document) {
  // Top-level keys starting with "x-" are ignored: a place to define anchors for later aliases.
  YamlNode root = document;
  std::erase_if(root.entries, [](const auto& entry) { return entry.first.scalar.starts_with("x-"); });
  ExperimentConfig cfg;
  c.check_keys(root, kTopKeys, "the config");
  if (const YamlNode* n = root.find("data_root"))
    if (auto s = c.string(*n)) cfg.data_root = relative_to(*n, *s);
  if (const YamlNode* n = root.find("results_dir"))
    if (auto s = c.string(*n)) cfg.results_dir = relative_to(*n, *s);
  c.read(root, "threads", cfg.threads, threads());
  c.read(root, "seed", cfg.seed, at_least(0));

  if (const YamlNode* models = c.field(root, "models", true)) {
    if (models->kind != Kind::Sequence) {
      c.problem(*models, "models must be a list, got " + SchemaChecker::shown(*models));
    } else {
      if (models->items.empty()) c.problem(*models, "models must list at least one model");
      for (const auto& item : models->items) {
        ModelSpec m = parse_model(c, item);
        for (const auto& other : cfg.models) {
          if (other.name == m.name) c.problem(item, "model name \"" + m.name + "\" used twice");
          else if (other.path == m.path && other.dtype == m.dtype)
            c.problem(item, "model path \"" + m.path + "\" is already listed as \"" + other.name + "\"");
        }
        cfg.models.push_back(m);
      }
    }
  }
  parse_list(c, root, "quantizers", cfg.quantizers, [&](const YamlNode& n) { return parse_quantizer(c, n); });
  parse_list(c, root, "kv_bits", cfg.kv_bits, [&](const YamlNode& n) {
    auto v = c.integer(n);
    return v && c.passes(n, "kv_bits", static_cast<double>(*v), kBitsOrOff) ? static_cast<int>(*v) : 16;
  });
  parse_list(c, root, "intactkv", cfg.intactkv, [&](const YamlNode& n) { return parse_intactkv(c, n); });
  parse_list(c, root, "kv_quant", cfg.kv_quant, [&](const YamlNode& n) { return parse_kv_quant(c, n); });
  parse_list(c, root, "kv_protect", cfg.kv_protect, [&](const YamlNode& n) {
    std::string v = "none";
    if (auto s = c.string(n)) v = *s;
    if (std::find(kKvProtect.begin(), kKvProtect.end(), v) == kKvProtect.end())
      c.problem(n, "kv_protect must be none or sinks, got '" + v + "'" + did_you_mean(v, kKvProtect));
    return v;
  });
  if (const YamlNode* n = root.find("ci_baseline")) {
    c.read(root, "ci_baseline", cfg.ci_baseline);
    if (cfg.ci_baseline != "none" && cfg.ci_baseline != "bos")
      c.problem(*n, "ci_baseline must be none or bos, got '" + cfg.ci_baseline + "'");
  }
  if (const YamlNode* tasks = c.field(root, "tasks", true)) {
    parse_tasks(c, *tasks, cfg.tasks);
    if (cfg.tasks.quant_error && std::none_of(cfg.quantizers.begin(), cfg.quantizers.end(), has_quant_error))
      c.problem(*tasks->find("quant_error"), "quant_error measures rtn, gptq and awq quantizers; the config has none");
  }
  // An IntactKV prefix starts with <bos>: it cannot stand in for requests that have none.
  const bool no_bos = (cfg.tasks.qa && cfg.tasks.qa->bos == "never") || (cfg.tasks.mmlu && cfg.tasks.mmlu->bos == "never");
  if (no_bos && std::any_of(cfg.intactkv.begin(), cfg.intactkv.end(),
                            [](const IntactKVSpec& v) { return v.kind != IntactKVSpec::Kind::None; }))
    c.problem(*root.find("intactkv"), "IntactKV prefixes start with <bos>; they cannot be used with bos: never");
  return cfg;
}

ExperimentConfig finish(const YamlNode& root, const std::string& file, std::vector<std::string> sources,
                        const std::string& texts) {
  SchemaChecker checker;
  ExperimentConfig cfg = build(checker, root);
  checker.throw_if_any();
  cfg.file = file;
  cfg.sources = std::move(sources);
  cfg.sha256 = io::sha256_hex(texts);  // for one file, what sha256sum prints
  return cfg;
}

}  // namespace

ExperimentConfig load_config(const std::string& path) {
  std::vector<std::string> sources;
  std::string texts;
  YamlNode root = load_yaml_with_extends(path, &sources, &texts);
  return finish(root, path, std::move(sources), texts);
}

ExperimentConfig parse_config(const std::string& text, const std::string& file) {
  std::vector<std::string> sources;
  std::string texts;
  YamlNode root = parse_yaml_with_extends(text, file, &sources, &texts);
  return finish(root, file, std::move(sources), texts);
}

IntactKVSpec parse_intactkv_arg(const std::string& arg) {
  using K = IntactKVSpec::Kind;
  IntactKVSpec v;
  if (arg == "none") return v;
  if (arg == "bos") {
    v.kind = K::Bos;
  } else if (arg == "auto") {
    v.kind = K::Auto;
  } else if (arg == "vicuna" || arg == "system" || arg == "outliers") {
    v.kind = K::Preset;
    v.value = arg;
  } else if (arg.rfind("prompt:", 0) == 0) {
    v.kind = K::Prompt;
    v.value = arg.substr(7);
  } else {
    v.kind = K::File;
    v.value = arg;
  }
  return v;
}

}  // namespace ikv::exp
