#pragma once
#include "cli_common.h"

namespace ikv::cli {
void add_ppl_command(CLI::App& app, Common& common);
void add_generate_command(CLI::App& app, Common& common);
void add_intactkv_command(CLI::App& app, Common& common);
void add_inspect_command(CLI::App& app, Common& common);
void add_tasks_command(CLI::App& app, Common& common);
void add_mse_sweep_command(CLI::App& app, Common& common);
void add_quantize_command(CLI::App& app, Common& common);
void add_quant_error_command(CLI::App& app, Common& common);
void add_tokenize_command(CLI::App& app, Common& common);
void add_synth_command(CLI::App& app, Common& common);
// run, and report / compare; exit_code receives the command's status (1 = regression, 2 = error).
void add_run_command(CLI::App& app, Common& common, int& exit_code);
void add_report_commands(CLI::App& app, int& exit_code);
}  // namespace ikv::cli
