// ikv-bench: performance tables (tokens/s, GFLOP/s, GB/s) measured against baselines in the same
// run. `ikv-bench all` runs every table; each subcommand runs one.
#include "bench_calibrate.h"
#include "bench_engine.h"
#include "bench_kernels.h"
#include "bench_quantize.h"
#include "bench_scale.h"
#include "bench_tasks.h"
#include "cli_common.h"
#include "exp/model_setup.h"
#include "io/data_root.h"

int main(int argc, char** argv) {
  CLI::App app{"ikv-bench: kernel and engine throughput", "ikv-bench"};
  app.require_subcommand(1);
  ikv::cli::Common common;
  auto setup = [&] { ikv::exp::set_threads(common.threads); };
  CLI::App* kernels = app.add_subcommand("kernels", "FP32/BF16 (oneDNN) vs packed W4/W3 GEMV/GEMM, DRAM bandwidth");
  ikv::cli::add_common(kernels, common);
  kernels->callback([&] { setup(), bench_kernels(common.json); });
  CLI::App* engine = app.add_subcommand("engine", "perplexity throughput FP32/BF16 at 1 and all threads");
  ikv::cli::add_common(engine, common);
  engine->callback([&] { setup(), bench_engine(common.json, ikv::io::resolve_data_root(common.data_root)); });
  CLI::App* tasks = app.add_subcommand("tasks", "loglikelihood scorer: context reuse and throughput");
  ikv::cli::add_common(tasks, common);
  std::string tasks_model = "all";
  tasks->add_option("--model", tasks_model, "testbed (testbed-26M) | 1b (the 1B-class synthetic shape) | all")
      ->check(CLI::IsMember({"testbed", "1b", "all"}));
  tasks->callback([&] { setup(), bench_tasks(common.json, ikv::io::resolve_data_root(common.data_root), tasks_model); });
  CLI::App* calibrate = app.add_subcommand("calibrate", "IntactKV calibration: time per epoch, backward/forward ratio");
  ikv::cli::add_common(calibrate, common);
  calibrate->callback([&] { setup(), bench_calibrate(common.json, ikv::io::resolve_data_root(common.data_root)); });
  CLI::App* quantize = app.add_subcommand("quantize", "RTN/GPTQ/AWQ time on testbed-26M; GPTQ at LLaMA-7B shapes");
  ikv::cli::add_common(quantize, common);
  quantize->callback([&] { setup(), bench_quantize(common.json, ikv::io::resolve_data_root(common.data_root)); });
  ScaleBenchOptions scale_opt;
  CLI::App* scale = app.add_subcommand("scale", "ikv-eval ppl at real size: peak memory, tokens/s, GFLOP/s per dtype");
  ikv::cli::add_common(scale, common);
  scale->add_option("-m,--model", scale_opt.model, "checkpoint folder (e.g. from ikv-eval synth)")->required();
  scale->add_option("--rows", scale_opt.rows, "fp32 | bf16 | q8 | rtn-wB[-DTYPE], each +lm (--order layers) +wm (--order windows) +headB (--quant-head B), e.g. rtn-w4-q8+head8")->delimiter(',');
  scale->add_option("-c,--ctx", scale_opt.ctx, "window length");
  scale->add_option("--windows", scale_opt.windows, "windows per run");
  scale->add_option("--eval", scale_opt.eval, "the ikv-eval to measure (default: next to ikv-bench)");
  scale->add_option("--baseline", scale_opt.baseline, "another ikv-eval build to run the same rows with (A/B)");
  scale->add_option("--mem-limit-gb", scale_opt.mem_limit_gb, "address-space cap per run (default: none)");
  scale->callback([&] {
    scale_opt.threads = common.threads;
    scale_opt.data_root = common.data_root;
    bench_scale(common.json, scale_opt);
  });
  CLI::App* all = app.add_subcommand("all", "every table");
  ikv::cli::add_common(all, common);
  all->callback([&] {
    setup();
    bench_kernels(common.json);
    bench_engine(common.json, ikv::io::resolve_data_root(common.data_root));
    bench_tasks(common.json, ikv::io::resolve_data_root(common.data_root));
    bench_calibrate(common.json, ikv::io::resolve_data_root(common.data_root));
    bench_quantize(common.json, ikv::io::resolve_data_root(common.data_root));
  });
  return ikv::cli::run_app(app, argc, argv);
}
