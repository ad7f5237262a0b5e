#pragma once
#include "cli_common.h"

namespace ikv::cli {
void add_ppl_command(CLI::App& app, Common& common);
void add_generate_command(CLI::App& app, Common& common);
void add_intactkv_command(CLI::App& app, Common& common);
void add_inspect_command(CLI::App& app, Common& common);
void add_tasks_command(CLI::App& app, Common& common);
}  // namespace ikv::cli
