// The experiment config (`ikv-eval run config.yaml`) as plain structs, validated once on load and
// trusted afterwards. Every problem is reported as FILE:LINE:COLUMN: message; all problems of a
// file are joined with "; " into the one-line ikv::Error. Top-level keys starting with "x-" are
// ignored (a place to define YAML anchors).
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ikv::exp {

inline const std::vector<std::string> kQaTasks = {"arc_easy",   "arc_challenge", "boolq", "openbookqa",
                                                  "winogrande", "hellaswag",     "piqa",  "lambada_openai"};
// Weight quantization methods (QuantizerSpec::method).
inline const std::vector<std::string> kMethods = {"fp", "rtn", "gptq", "awq", "quarot"};
// Named text datasets (ppl, kld, quant_error, calibration data); anything else must look like a file path.
inline const std::vector<std::string> kNamedDatasets = {"wikitext2", "ptb", "sharegpt"};

// Compute dtypes: fp32; bf16 (dense linears hold bf16 weights, packed ones take bf16 inputs); q8
// (fp32, except that packed linears take their inputs as int8 blocks: the VNNI kernel).
inline const std::vector<std::string> kDtypes = {"fp32", "bf16", "q8"};
inline bool is_dtype(const std::string& d) { return std::find(kDtypes.begin(), kDtypes.end(), d) != kDtypes.end(); }

struct ModelSpec {
  std::string name;            // label; defaults to the folder name of `path`
  std::string path;            // as written: absolute, or relative to the data root
  std::string dtype = "fp32";  // fp32 | bf16 | q8 (exp::apply_dtype)
  std::string where;           // "file:line:column" of the entry, for later errors (not compared)
  bool operator==(const ModelSpec& o) const { return name == o.name && path == o.path && dtype == o.dtype; }
};

// One quantization method. Fields a method does not use keep their defaults and are left out of
// its label and key (QuantizerSpec::settings in plan.h).
struct QuantizerSpec {
  std::string method = "fp";         // fp | rtn | gptq | awq | quarot
  std::string label;                 // optional `label:`; default from the settings, e.g. "rtn-w3g128"
  int wbits = 16;                    // 2..8 (16 for fp)
  int group = 128;                   // input channels per group; -1 = per output channel (quarot default)
  bool sym = false;                  // rtn, gptq, quarot
  bool act_order = false;            // gptq
  int abits = 16;                    // quarot activation bits: 2..8, or 16 = off
  double clip_ratio = 1.0;           // quarot activation clipping, (0, 1]
  std::string weight_quant = "rtn";  // quarot: rtn | gptq
  // lm_head: 16 = full precision (the paper's setting), or 2..8 bits by RTN (asymmetric, groups of
  // 128 where they divide the width, else per output channel), after any rotation.
  int head_bits = 16;
  bool keep_super_weights = false;   // rtn: hold the model's super weights out, exact (exp/keep_super_weights.h)
  // dynamic | static: PrefixQuant's static per-tensor activation (abits < 16) and KV-cache (kv_bits
  // < 16) scales, calibrated per cell on `data` with the cell's IntactKV prefix in the cache
  // (intactkv/static_scales.h). Any method but fp.
  std::string scales = "dynamic";
  // Calibration (gptq, awq, quarot with gptq weights).
  int samples = 128;
  int seq_len = 2048;
  std::string data = "sharegpt";  // dataset name or file path
  bool operator==(const QuantizerSpec&) const = default;

  bool is_fp() const { return method == "fp"; }
  bool needs_calibration() const;  // the weight quantizer reads calibration data
  bool static_scales() const { return scales == "static"; }
  bool reads_calibration_data() const { return needs_calibration() || static_scales(); }
  // The settings that decide the packed weights (static scales are calibrated per cell, later).
  QuantizerSpec weights_only() const;
  std::string short_label() const;  // label if given, else "fp", "rtn-w3g128", "quarot-w4a4", ...
};

// How a quantized KV cache (kv_bits < 16) is quantized: the `kv_quant:` and `kv_protect:` axes
// (engine/kv_scheme.h). The defaults are the reference's per-token quantizer of every new token.
inline const std::vector<std::string> kKeyQuant = {"per_token", "per_channel_prerope"};
inline const std::vector<std::string> kKvProtect = {"none", "sinks"};
struct KvQuantSpec {
  std::string keys = "per_token";  // kKeyQuant; values are always per token
  int residual = 0;                // per_channel_prerope (KIVI): most recent tokens kept FP
  int group = 128;                 // per_channel_prerope: consecutive tokens per key group
  std::string protect = "none";    // kKvProtect: sinks keeps massive-activation tokens' K/V FP
  bool operator==(const KvQuantSpec&) const = default;
  bool is_default() const { return *this == KvQuantSpec{}; }
  // "" for the default, else the suffix of the method's label: "kivi128" (residual), "sinks".
  std::string short_label() const;
};

// A method's label with its KV scheme's, as stored and reported: "rtn-w3g128", "rtn-w3g128-sinks".
std::string quant_label(const QuantizerSpec& q, const KvQuantSpec& kv);

struct CalibrationSpec {          // IntactKV calibration (reference recipe defaults)
  std::string prefix = "vicuna";  // "bos" or a preset name
  int samples = 128;
  int epochs = 20;
  double lr = 2.0e-4;
  std::string data = "sharegpt";
  int max_len = 1024;
  bool operator==(const CalibrationSpec&) const = default;
};

struct IntactKVSpec {
  enum class Kind { None, Bos, Auto, Prompt, Preset, File, Calibrated };
  Kind kind = Kind::None;
  std::string value;            // Prompt: the text; Preset: its name; File: the path as written
  std::string sha256;           // File: optional `sha256:` of the artifact
  CalibrationSpec calibration;  // Calibrated only
  bool operator==(const IntactKVSpec&) const = default;

  // "none", "bos", "auto", "vicuna" (preset), "prompt-1a2b3c4d" (hash of the text),
  // "file-NAME" (file stem), "vicuna+cal" / "bos+cal" (calibrated).
  std::string short_label() const;
};

// The command line's `--intactkv` value as the same variant a config's `intactkv:` entry gives:
// none, bos, auto; vicuna, system (presets); prompt:TEXT; anything else is an .ikv.safetensors file.
IntactKVSpec parse_intactkv_arg(const std::string& arg);

struct PplTask {
  std::vector<std::string> datasets = {"wikitext2"};  // names (kPplDatasets) or file paths
  int ctx = 2048;
  int windows = 0;  // 0 = all
  bool operator==(const PplTask&) const = default;
};
// Whether loglikelihood requests start with <bos>: "always" (the paper, lm-eval >= 0.4.9.2) or
// "never" (lm-eval 0.4.0-0.4.9.1 on LLaMA).
inline const std::vector<std::string> kBosPolicies = {"always", "never"};
// MMLU prompts: "paper" (the Hendrycks script the IntactKV repo runs: two spaces after "about",
// pandas' "None" -> "nan") or "lm-eval" (lm-eval v0.4's mmlu: one space, question stripped).
inline const std::vector<std::string> kMmluFormats = {"paper", "lm-eval"};
// The reference drops few-shot examples while the prompt (with <bos>) exceeds this many tokens.
inline constexpr int kMmluMaxCtx = 2048;

struct MmluTask {
  int shots = 5;
  std::vector<std::string> subjects;  // empty = all
  int limit = 0;                      // items per subject, 0 = all
  int max_ctx = kMmluMaxCtx;          // shot dropping limit (capped by the model's context); 0 = none
  std::string bos = "always";         // kBosPolicies
  std::string format = "paper";       // kMmluFormats
  bool operator==(const MmluTask&) const = default;
};
struct QaTask {
  std::vector<std::string> tasks = kQaTasks;  // each one of kQaTasks
  int limit = 0;                              // items per task, 0 = all
  std::string bos = "always";                 // kBosPolicies
  // The tasks the table's Avg column averages (each by its paper metric); default: the paper's.
  std::vector<std::string> average;           // empty = eval::paper_qa_tasks()
  bool operator==(const QaTask&) const = default;
};
struct MseSweepTask {
  std::string prefix = "vicuna";
  int max_size = 34;
  int samples = 8;
  std::string data = "sharegpt";
  bool operator==(const MseSweepTask&) const = default;
};
struct KldTask {
  std::string dataset = "wikitext2";
  int ctx = 512;
  int windows = 8;
  bool operator==(const KldTask&) const = default;
};
// The layer reconstruction error of each rtn, gptq and awq quantizer (exp/quant_error.h): every
// decoder linear's relative output error on the FP model's activations of held-out text.
struct QuantErrorTask {
  std::string heldout = "wikitext2";  // never the quantizers' calibration data
  int64_t tokens = 8192;              // held-out tokens
  int64_t ctx = 512;                  // tokens per held-out sequence, <bos> included
  bool operator==(const QuantErrorTask&) const = default;
};
// The quantizers quant_error measures.
inline bool has_quant_error(const QuantizerSpec& q) {
  return q.method == "rtn" || q.method == "gptq" || q.method == "awq";
}
struct TaskSpecs {
  std::optional<PplTask> ppl;
  std::optional<MmluTask> mmlu;
  std::optional<QaTask> qa;
  std::optional<MseSweepTask> mse_sweep;
  std::optional<KldTask> kld;
  std::optional<QuantErrorTask> quant_error;
  bool operator==(const TaskSpecs&) const = default;
};

struct ExperimentConfig {
  std::string file;                  // the config file as given
  std::vector<std::string> sources;  // it and every file it extends, in that order
  std::string sha256;                // of the text of those files, concatenated in that order
  std::string data_root;             // resolved against the declaring file's folder; "" = not set
  std::string results_dir;           // likewise; "" = the CLI's default (results/)
  int threads = 0;                   // 0 = all cores
  int64_t seed = 0;
  std::vector<ModelSpec> models;
  std::vector<QuantizerSpec> quantizers = {QuantizerSpec{}};
  std::vector<int> kv_bits = {16};
  std::vector<IntactKVSpec> intactkv = {IntactKVSpec{}};
  std::vector<KvQuantSpec> kv_quant = {KvQuantSpec{}};  // keys/residual/group of each entry
  std::vector<std::string> kv_protect = {"none"};
  // The IntactKV variant the report's paired CIs compare every row against ("none": each method's
  // own row without IntactKV; "bos": IntactKV_[B] of the same method without the variant's extras).
  std::string ci_baseline = "none";
  TaskSpecs tasks;
  bool operator==(const ExperimentConfig& o) const {  // settings only, not where they came from
    return data_root == o.data_root && results_dir == o.results_dir && threads == o.threads &&
           seed == o.seed && models == o.models && quantizers == o.quantizers && kv_bits == o.kv_bits &&
           intactkv == o.intactkv && kv_quant == o.kv_quant && kv_protect == o.kv_protect &&
           ci_baseline == o.ci_baseline && tasks == o.tasks;
  }
};

// Reads and validates a config file (following `extends`). Throws ikv::Error.
ExperimentConfig load_config(const std::string& path);
// The same for text already in memory; `file` names it in messages and anchors `extends`.
ExperimentConfig parse_config(const std::string& text, const std::string& file);
// Model folders must exist (absolute, or relative to data_root); the first missing one is an
// Error "FILE:LINE:COLUMN: model path does not exist: RESOLVED". Kept apart from parsing so
// schema checks need no data.
void check_paths_exist(const ExperimentConfig& config, const std::string& data_root);
// Resolves a model's path against the data root.
std::string model_dir(const ModelSpec& model, const std::string& data_root);

}  // namespace ikv::exp
