// What every ikv command line shares: data root, threads, JSON output, and turning errors into
// one line on stderr with exit code 2.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>

#include "io/error.h"

namespace ikv::cli {

struct Common {
  std::string data_root;
  int threads = 0;
  bool json = false;
};

inline void add_common(CLI::App* app, Common& c) {
  app->add_option("--data-root", c.data_root, "ikv-data folder (default: $IKV_DATA, then ../shared/ikv-data)");
  app->add_option("-t,--threads", c.threads, "OpenMP threads (0 = all cores)");
  app->add_flag("--json", c.json, "print machine-readable JSON on stdout");
}

// Parses and runs; every error becomes "PROGRAM: message" and exit code 2.
inline int run_app(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\n", app.get_name().c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", app.get_name().c_str(), e.what());
    return 2;
  }
  return 0;
}

}  // namespace ikv::cli
