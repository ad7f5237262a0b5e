// ikv-eval ppl and ikv-eval generate.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "exp/estimate.h"
#include "exp/report.h"
#include "eval/perplexity.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "io/mapped_file.h"
#include "variant_options.h"

namespace ikv::cli {
namespace {

struct PplArgs {
  exp::VariantSpec variant;
  std::string dataset = "wikitext2";
  int64_t ctx = 512, windows = 0;
  std::string order = "auto";  // auto | windows | layers
};

void run_ppl(const Common& common, const PplArgs& a) {
  exp::set_threads(common.threads);
  exp::validate_variant(a.variant);
  const std::string root = io::find_data_root(common.data_root);
  const std::string text_path = exp::resolve_text_dataset(root, a.dataset);
  exp::PreparedVariant v = exp::prepare_variant(root, a.variant);
  const model::Weights& w = v.model.weights;
  if (!v.intactkv_note.empty()) std::fprintf(stderr, "%s\n", v.intactkv_note.c_str());
  std::vector<int32_t> stream = eval::perplexity_stream(*v.model.tokenizer, io::read_utf8_text(text_path), w.config.bos_id);
  engine::Engine eng(w, v.engine_options);
  eval::PerplexityOptions opt;
  opt.ctx = a.ctx;
  opt.windows = a.windows;
  opt.source = text_path;
  opt.kv_bits = a.variant.kv_bits;
  opt.quantize_prefix = a.variant.quantize_prefix;
  std::string why;
  opt.layer_major = a.order == "layers" || (a.order == "auto" && exp::layer_major_needed(w, &why));
  if (!why.empty()) std::fprintf(stderr, "%s\n", why.c_str());
  eval::PerplexityResult r = eval::perplexity(eng, stream, opt, v.prefix_ptr());
  const exp::QuantizerSpec& q = v.quant;
  if (common.json) {
    nlohmann::json j = {{"model", a.variant.model}, {"dataset", a.dataset}, {"ctx", a.ctx}, {"dtype", a.variant.dtype},
                        {"ppl", r.ppl}, {"nll", r.nll_sum}, {"tokens_scored", r.tokens_scored},
                        {"windows", r.windows}, {"layer_major", opt.layer_major}, {"seconds", r.seconds}, {"tokens_per_second", r.tokens_per_second},
                        {"quant", {{"method", q.method}, {"wbits", q.method == "fp" ? 16 : q.wbits},
                                   {"group", q.group}, {"sym", q.sym}, {"abits", q.abits}, {"head_bits", q.head_bits},
                                   {"kv_bits", a.variant.kv_bits}}},
                        {"intactkv", a.variant.intactkv},
                        {"intactkv_size", v.prefix ? v.prefix->size() : 0}};
    if (!eng.sinks_kept().empty()) j["sink_tokens_per_window"] = eng.sinks_kept();
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s  %s  %s  kv%d  intactkv=%s  ctx %lld  windows %lld  tokens %lld  PPL %.4f  (%.1f s, %.0f tokens/s)\n",
                a.variant.model.c_str(), exp::method_label(exp::quant_label(q, a.variant.kv), 16).c_str(), a.dataset.c_str(), a.variant.kv_bits,
                a.variant.intactkv.c_str(), (long long)a.ctx, (long long)r.windows, (long long)r.tokens_scored, r.ppl,
                r.seconds, r.tokens_per_second);
    if (!eng.sinks_kept().empty()) {
      std::string counts;
      for (int64_t k : eng.sinks_kept()) counts += " " + std::to_string(k);
      std::printf("sink tokens kept per window:%s\n", counts.c_str());
    }
  }
}

struct GenerateArgs {
  exp::VariantSpec variant;
  std::string prompt;
  int64_t n = 64;
};

void run_generate(const Common& common, const GenerateArgs& a) {
  exp::set_threads(common.threads);
  const std::string root = io::find_data_root(common.data_root);
  exp::PreparedVariant v = exp::prepare_variant(root, a.variant);
  const model::Config& c = v.model.weights.config;
  std::vector<int32_t> ids = c.bos_tokens();
  for (int32_t t : v.model.tokenizer->encode(a.prompt)) ids.push_back(t);
  const int64_t P = v.prefix ? v.prefix->size() : 0;
  const int64_t total = std::min<int64_t>(c.max_pos, static_cast<int64_t>(ids.size()) + a.n);
  engine::Engine eng(v.model.weights, v.engine_options);
  engine::KVCache cache = engine::make_kv_cache(c, total + P, a.variant.kv_bits);
  int64_t m = 0;
  if (v.prefix) {
    intactkv::install_prefix(cache, *v.prefix, eng, a.variant.quantize_prefix);
    m = std::min<int64_t>(intactkv::matched_prefix_length(*v.prefix, ids), static_cast<int64_t>(ids.size()) - 1);
  }
  std::vector<float> logits;
  eng.forward(cache, ids.data() + m, ids.size() - m, &logits, ids.size() - m - 1);
  const std::vector<int32_t> prompt_ids = ids;
  std::vector<int32_t> out;
  while (static_cast<int64_t>(ids.size()) < total) {
    int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (next == c.eos_id) break;
    ids.push_back(next);
    out.push_back(next);
    if (static_cast<int64_t>(ids.size()) == total) break;
    eng.forward(cache, &next, 1, &logits);
  }
  // The completion as it continues the prompt's text: decoded alone, its first word would lose the
  // space that sentencepiece keeps as part of the token ("▁is").
  const std::string head = v.model.tokenizer->decode(prompt_ids), full = v.model.tokenizer->decode(ids);
  const std::string text = full.starts_with(head) ? full.substr(head.size()) : v.model.tokenizer->decode(out);
  if (common.json)
    std::printf("%s\n", nlohmann::json({{"prompt", a.prompt}, {"completion", text}, {"tokens", out}}).dump().c_str());
  else
    std::printf("%s%s\n", a.prompt.c_str(), text.c_str());
}

}  // namespace

void add_ppl_command(CLI::App& app, Common& common) {
  static PplArgs a;
  CLI::App* cmd = app.add_subcommand("ppl", "perplexity (the IntactKV paper's procedure)");
  add_common(cmd, common);
  add_variant_options(cmd, a.variant);
  cmd->add_option("-d,--dataset", a.dataset, "wikitext2 | ptb | a text file (e.g. a C4 shard)");
  cmd->add_option("-c,--ctx", a.ctx, "window length in tokens")->check(rule(exp::rules::kCtx));
  cmd->add_option("--windows", a.windows, "number of windows (0 = all)")->check(rule(exp::rules::kCount));
  cmd->add_option("--order", a.order,
                  "windows: window by window; layers: layer-major, each decoder layer over a block of windows before "
                  "the next is read (each weight read once per block); auto (default): layers when the model does not "
                  "fit in memory. Same result")
      ->check(CLI::IsMember({"auto", "windows", "layers"}));
  cmd->callback([&common] { run_ppl(common, a); });
}

void add_generate_command(CLI::App& app, Common& common) {
  static GenerateArgs a;
  CLI::App* cmd = app.add_subcommand("generate", "greedy generation (smoke test)");
  add_common(cmd, common);
  add_variant_options(cmd, a.variant);
  cmd->add_option("-p,--prompt", a.prompt, "prompt text")->required();
  cmd->add_option("-n", a.n, "tokens to generate")->check(rule(exp::rules::kSamples));
  cmd->callback([&common] { run_generate(common, a); });
}

}  // namespace ikv::cli
