// ikv-eval synth: a synthetic checkpoint at a real model's shape (random weights, the family's
// config.json, shards, the family's tokenizer linked from the data root).
#include <chrono>
#include <nlohmann/json.hpp>

#include "exp/model_setup.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "model/synth.h"

namespace ikv::cli {
namespace {

struct SynthArgs {
  model::SynthOptions opt;
  std::string out;
  double max_shard_gb = 5.0;
};

void run_synth(const Common& common, SynthArgs a) {
  exp::set_threads(common.threads);
  a.opt.data_root = io::find_data_root(common.data_root);
  a.opt.max_shard_bytes = static_cast<int64_t>(a.max_shard_gb * 1e9);
  const auto t0 = std::chrono::steady_clock::now();
  const model::SynthResult r = model::write_synth_checkpoint(a.out, a.opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const model::Config& c = r.config;
  if (common.json) {
    const nlohmann::json j = {{"dir", a.out}, {"shape", a.opt.shape}, {"dtype", a.opt.dtype}, {"seed", a.opt.seed},
                              {"layers", c.n_layers}, {"params", r.params}, {"bytes", r.bytes},
                              {"shards", r.shards}, {"tokenizer", r.tokenizer_files}, {"seconds", s}};
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%s: %s%s, %lld layers, %.3f B params, %.2f GB %s in %zu shard%s (%.1f s)\n", a.out.c_str(),
              a.opt.shape.c_str(), a.opt.tiny ? " (tiny)" : "", (long long)c.n_layers, r.params / 1e9, r.bytes / 1e9,
              a.opt.dtype.c_str(), r.shards.size(), r.shards.size() == 1 ? "" : "s", s);
  if (r.tokenizer_files.empty())
    std::fprintf(stderr, "no data root: no tokenizer linked (ikv-eval ppl needs one next to config.json)\n");
  for (const auto& f : r.tokenizer_files) std::printf("  tokenizer -> %s\n", f.c_str());
}

}  // namespace

void add_synth_command(CLI::App& app, Common& common) {
  static SynthArgs a;
  std::string shapes;
  for (const auto& s : model::synth_shapes()) shapes += (shapes.empty() ? "" : "|") + s;
  CLI::App* cmd = app.add_subcommand("synth", "write a synthetic checkpoint (random weights) of a real model's shape");
  add_common(cmd, common);
  cmd->add_option("--shape", a.opt.shape, shapes)->required();
  cmd->add_option("-o,--out", a.out, "output folder (new or empty)")->required();
  cmd->add_option("--layers", a.opt.layers, "decoder layers (default: the shape's)")->check(CLI::Range(1, 1024));
  cmd->add_option("--dtype", a.opt.dtype, "bf16 | fp16")->check(CLI::IsMember({"bf16", "fp16"}));
  cmd->add_option("--seed", a.opt.seed, "seed of the random weights");
  cmd->add_option("--max-shard-gb", a.max_shard_gb, "largest shard, GB (10^9 bytes)")->check(CLI::Range(0.001, 1000.0));
  cmd->add_flag("--tiny", a.opt.tiny, "test size: every width shrunk (vocabulary and features kept)");
  cmd->callback([&common] { run_synth(common, a); });
}

}  // namespace ikv::cli
