// ikv-eval: evaluate FP and quantized LLaMA models, with and without IntactKV. Each subcommand
// lives in its own ikv-eval_*.cc file and registers itself here.
#include "cli_common.h"
#include "ikv-eval_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ikv-eval: accuracy of quantized LLaMA models, with and without IntactKV", "ikv-eval"};
  app.require_subcommand(1);
  ikv::cli::Common common;
  ikv::cli::add_ppl_command(app, common);
  ikv::cli::add_generate_command(app, common);
  ikv::cli::add_intactkv_command(app, common);
  ikv::cli::add_inspect_command(app, common);
  ikv::cli::add_tasks_command(app, common);
  ikv::cli::add_mse_sweep_command(app, common);
  ikv::cli::add_quantize_command(app, common);
  ikv::cli::add_quant_error_command(app, common);
  ikv::cli::add_tokenize_command(app, common);
  ikv::cli::add_synth_command(app, common);
  int exit_code = 0;
  ikv::cli::add_run_command(app, common, exit_code);
  ikv::cli::add_report_commands(app, exit_code);
  const int rc = ikv::cli::run_app(app, argc, argv);
  return rc != 0 ? rc : exit_code;
}
