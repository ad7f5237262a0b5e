// What every ikv command line shares: data root, threads, JSON output, and turning errors into
// one line on stderr with exit code 2.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>

#include "exp/rules.h"
#include "io/error.h"

namespace ikv::cli {

struct Common {
  std::string data_root;
  int threads = 0;
  bool json = false;
};

// A YAML schema rule (exp/rules.h) as a CLI11 check, so a flag accepts exactly what the config
// key does: "--windows: must be at least 0, got -5".
inline CLI::Validator rule(const exp::Rule& r) {
  return CLI::Validator(
      [r](std::string& text) -> std::string {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size()) return "must be a number, got '" + text + "'";
        const std::string expected = r(v);
        return expected.empty() ? "" : "must be " + expected + ", got " + text;
      },
      "");
}

inline void add_common(CLI::App* app, Common& c) {
  app->add_option("--data-root", c.data_root, "ikv-data folder (default: $IKV_DATA, then ../shared/ikv-data)");
  app->add_option("-t,--threads", c.threads, "OpenMP threads (0 = all cores)")->check(rule(exp::rules::threads()));
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
