// ikv-eval: evaluate FP and quantized LLaMA models, with and without IntactKV.
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "engine/forward.h"
#include "eval/perplexity.h"
#include "exp/model_setup.h"
#include "io/data_root.h"
#include "io/mapped_file.h"

using namespace ikv;

namespace {

struct PplArgs {
  std::string model, dataset = "wikitext2", dtype = "fp32";
  int64_t ctx = 512, windows = 0;
};

void run_ppl(const cli::Common& common, const PplArgs& a) {
  exp::set_threads(common.threads);
  const std::string root = io::find_data_root(common.data_root);
  exp::LoadedModel m = exp::load_model_verified(root, a.model, a.dtype);
  const std::string text_path = exp::resolve_text_dataset(root, a.dataset);
  std::vector<int32_t> stream =
      eval::perplexity_stream(*m.tokenizer, io::read_text_file(text_path), m.weights.config.bos_id);
  engine::Engine eng(m.weights);
  eval::PerplexityOptions opt;
  opt.ctx = a.ctx;
  opt.windows = a.windows;
  eval::PerplexityResult r = eval::perplexity(eng, stream, opt);
  if (common.json) {
    nlohmann::json j = {{"model", a.model},       {"dataset", a.dataset},         {"ctx", a.ctx},
                        {"dtype", a.dtype},       {"ppl", r.ppl},                 {"nll", r.nll_sum},
                        {"tokens_scored", r.tokens_scored}, {"windows", r.windows}, {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s  %s  ctx %lld  windows %lld  tokens %lld  PPL %.4f  (%.1f s, %.0f tokens/s)\n", a.model.c_str(),
                a.dataset.c_str(), static_cast<long long>(a.ctx), static_cast<long long>(r.windows),
                static_cast<long long>(r.tokens_scored), r.ppl, r.seconds, r.tokens_per_second);
  }
}

struct GenerateArgs {
  std::string model, prompt, dtype = "fp32";
  int64_t n = 64;
};

void run_generate(const cli::Common& common, const GenerateArgs& a) {
  exp::set_threads(common.threads);
  const std::string root = io::find_data_root(common.data_root);
  exp::LoadedModel m = exp::load_model_verified(root, a.model, a.dtype);
  const model::Config& c = m.weights.config;
  std::vector<int32_t> ids{c.bos_id};
  for (int32_t t : m.tokenizer->encode(a.prompt)) ids.push_back(t);
  const int64_t total = std::min<int64_t>(c.max_pos, static_cast<int64_t>(ids.size()) + a.n);
  engine::Engine eng(m.weights);
  engine::KVCache cache = engine::make_kv_cache(c, total);
  std::vector<float> logits;
  eng.forward(cache, ids.data(), ids.size(), &logits, ids.size() - 1);
  std::vector<int32_t> out;
  while (static_cast<int64_t>(ids.size()) < total) {
    int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (next == c.eos_id) break;
    ids.push_back(next);
    out.push_back(next);
    if (static_cast<int64_t>(ids.size()) == total) break;
    eng.forward(cache, &next, 1, &logits);
  }
  const std::string text = m.tokenizer->decode(out);
  if (common.json)
    std::printf("%s\n", nlohmann::json({{"prompt", a.prompt}, {"completion", text}, {"tokens", out}}).dump().c_str());
  else
    std::printf("%s%s\n", a.prompt.c_str(), text.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ikv-eval: accuracy of quantized LLaMA models, with and without IntactKV", "ikv-eval"};
  app.require_subcommand(1);
  cli::Common common;

  PplArgs ppl;
  CLI::App* ppl_cmd = app.add_subcommand("ppl", "perplexity (the IntactKV paper's procedure)");
  cli::add_common(ppl_cmd, common);
  ppl_cmd->add_option("-m,--model", ppl.model, "HF model folder or llama2.c .bin (path or data-root name)")->required();
  ppl_cmd->add_option("-d,--dataset", ppl.dataset, "wikitext2 | ptb | a text file");
  ppl_cmd->add_option("-c,--ctx", ppl.ctx, "window length in tokens");
  ppl_cmd->add_option("--windows", ppl.windows, "number of windows (0 = all)");
  ppl_cmd->add_option("--dtype", ppl.dtype, "compute dtype: fp32 | bf16");
  ppl_cmd->callback([&] { run_ppl(common, ppl); });

  GenerateArgs gen;
  CLI::App* gen_cmd = app.add_subcommand("generate", "greedy generation (smoke test)");
  cli::add_common(gen_cmd, common);
  gen_cmd->add_option("-m,--model", gen.model, "model")->required();
  gen_cmd->add_option("-p,--prompt", gen.prompt, "prompt text")->required();
  gen_cmd->add_option("-n", gen.n, "tokens to generate");
  gen_cmd->add_option("--dtype", gen.dtype, "compute dtype: fp32 | bf16");
  gen_cmd->callback([&] { run_generate(common, gen); });

  return cli::run_app(app, argc, argv);
}
