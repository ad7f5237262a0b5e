#include "bench_scale.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "exp/estimate.h"
#include "io/error.h"
#include "exp/variant.h"
#include "io/mapped_file.h"
#include "io/memory.h"
#include "model/config.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  double peak_gib = 0, wall = 0;
  std::string out, err;  // stdout; the last line of stderr
};

// Runs argv in a child, its address space capped at limit bytes unless 0; stdout and stderr to files.
Run run_child(const std::vector<std::string>& argv, double limit_bytes) {
  const fs::path dir = fs::temp_directory_path();
  const std::string out = (dir / ("ikv-bench-scale." + std::to_string(::getpid()) + ".out")).string();
  const std::string err = (dir / ("ikv-bench-scale." + std::to_string(::getpid()) + ".err")).string();
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) fail("bench scale: fork failed");
  if (pid == 0) {
    const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) ::_exit(127);
    ::dup2(fo, 1), ::dup2(fe, 2);
    if (limit_bytes > 0) {
      struct rlimit rl {static_cast<rlim_t>(limit_bytes), static_cast<rlim_t>(limit_bytes)};
      ::setrlimit(RLIMIT_AS, &rl);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  Run r;
  struct rusage ru {};
  if (::wait4(pid, &r.status, 0, &ru) < 0) fail("bench scale: wait4 failed");
  r.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.peak_gib = ru.ru_maxrss / 1048576.0;  // kB
  r.out = io::read_text_file(out);
  std::istringstream es(io::read_text_file(err));
  for (std::string line; std::getline(es, line);)
    if (!line.empty()) r.err = line;
  fs::remove(out), fs::remove(err);
  return r;
}

// A row: BASE[+MOD...], BASE fp32 | bf16 | q8 (FP weights) or rtn-wB[-DTYPE] (RTN g128, DTYPE
// fp32 by default); MOD lm (--order layers), wm (--order windows) or headB (--quant-head B).
struct Row {
  std::vector<std::string> flags;  // of ikv-eval ppl
  std::string dtype = "fp32";
  exp::QuantizerSpec quant;
  bool order_forced = false;  // +lm or +wm: the estimate assumes the automatic order, so none is shown
};

Row parse_row(const std::string& row) {
  std::vector<std::string> parts;
  std::stringstream ss(row);
  for (std::string p; std::getline(ss, p, '+');) parts.push_back(p);
  const std::string base = parts.empty() ? "" : parts[0];
  Row r;
  if (base == "fp32" || base == "bf16" || base == "q8") {
    r.dtype = base;
  } else if (base.rfind("rtn-w", 0) == 0 && base.size() >= 6 && base[5] >= '2' && base[5] <= '8') {
    const size_t dash = base.find('-', 5);
    if (dash != std::string::npos) r.dtype = base.substr(dash + 1);
    r.quant = exp::rtn_spec(base[5] - '0', 128, false);
    r.flags = {"--quant", "rtn", "--wbits", base.substr(5, 1), "--group", "128"};
  } else {
    fail("bench scale: row '", row, "' is not fp32, bf16, q8 or rtn-wB[-DTYPE] (+lm, +wm, +headB)");
  }
  r.flags.insert(r.flags.end(), {"--dtype", r.dtype});
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "lm" || parts[i] == "wm") {
      r.order_forced = true;
      r.flags.insert(r.flags.end(), {"--order", parts[i] == "lm" ? "layers" : "windows"});
    } else if (parts[i].rfind("head", 0) == 0 && parts[i].size() > 4) {
      r.quant.head_bits = std::stoi(parts[i].substr(4));
      r.flags.insert(r.flags.end(), {"--quant-head", parts[i].substr(4)});
    } else {
      fail("bench scale: row '", row, "': unknown modifier '", parts[i], "' (lm, wm, headB)");
    }
  }
  return r;
}

}  // namespace

int bench_scale(bool json, const ScaleBenchOptions& opt) {
  if (opt.model.empty()) fail("bench scale: --model is required (a checkpoint folder, e.g. from ikv-eval synth)");
  const std::string config_path = (fs::path(opt.model) / "config.json").string();
  const model::Config c = model::parse_hf_config(io::read_text_file(config_path), config_path);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string eval = opt.eval.empty() ? (fs::path(self).parent_path() / "ikv-eval").string() : opt.eval;
  const double limit = opt.mem_limit_gb > 0 ? opt.mem_limit_gb * (1 << 30) : 0;
  int64_t weight_bytes = 0;
  for (const auto& e : fs::directory_iterator(opt.model))
    if (e.path().extension() == ".safetensors") weight_bytes += static_cast<int64_t>(fs::file_size(e.path()));
  const double params = (exp::flops_per_token(c, 0) / 2);
  std::printf("Perplexity at scale: %s (dim %lld, %lld layers, vocab %lld; %.2f B weights in linears and head; "
              "%.2f GB of safetensors), WikiText-2, ctx %ld, %ld windows, threads %d, address space capped at %.1f GiB (0 = not capped)\n",
              opt.model.c_str(), (long long)c.dim, (long long)c.n_layers, (long long)c.vocab, params / 1e9,
              weight_bytes / 1e9, opt.ctx, opt.windows, opt.threads, limit / (1 << 30));
  // The dry run's estimate of each row's peak (exp/estimate.h), beside what the run measured.
  const exp::ModelShape shape = exp::model_shape(opt.model);
  exp::MachineRates here;
  here.available_bytes = io::available_memory_bytes();
  std::printf("%-9s %-18s %12s %8s %10s %10s %14s %10s\n", "build", "weights", "peak RSS GiB", "est GiB", "tokens/s",
              "GFLOP/s", "PPL", "wall s");
  std::vector<std::pair<std::string, std::string>> builds = {{"after", eval}};
  if (!opt.baseline.empty()) builds.insert(builds.begin(), {"before", opt.baseline});
  for (const std::string& row_name : opt.rows) {
    const Row row = parse_row(row_name);
    exp::Cell cell;
    cell.model.dtype = row.dtype;
    cell.quant = row.quant;
    cell.task = exp::PplUnit{"wikitext2", static_cast<int>(opt.ctx), static_cast<int>(opt.windows)};
    const double est_gib = row.order_forced ? 0 : exp::estimate_cell(cell, shape, here).peak_bytes / (1 << 30);
    for (const auto& [label, bin] : builds) {
      std::vector<std::string> argv = {bin, "ppl", "-m", opt.model, "-c", std::to_string(opt.ctx), "--windows",
                                       std::to_string(opt.windows), "-t", std::to_string(opt.threads), "--json"};
      if (!opt.data_root.empty()) argv.insert(argv.end(), {"--data-root", opt.data_root});
      argv.insert(argv.end(), row.flags.begin(), row.flags.end());
      const Run r = run_child(argv, limit);
      nlohmann::json j = {{"bench", "scale"}, {"build", label}, {"weights", row_name}, {"model", opt.model},
                          {"ctx", opt.ctx}, {"windows", opt.windows}, {"threads", opt.threads},
                          {"peak_rss_gib", r.peak_gib}, {"estimated_peak_gib", est_gib}, {"wall_seconds", r.wall}};
      char est[16] = "-";
      if (est_gib > 0) std::snprintf(est, sizeof est, "%.2f", est_gib);
      const bool ok = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 && !r.out.empty();
      if (ok) {
        const nlohmann::json p = nlohmann::json::parse(r.out);
        const double tps = p["tokens_per_second"].get<double>();
        const double gflops = tps * exp::flops_per_token(c, opt.ctx) / 1e9;
        j["tokens_per_second"] = tps, j["gflops"] = gflops, j["ppl"] = p["ppl"];
        std::printf("%-9s %-18s %12.2f %8s %10.1f %10.1f %14.4f %10.1f\n", label.c_str(), row_name.c_str(), r.peak_gib,
                    est, tps, gflops, p["ppl"].get<double>(), r.wall);
      } else {
        const std::string why = WIFSIGNALED(r.status) ? "killed by signal " + std::to_string(WTERMSIG(r.status)) : r.err;
        j["error"] = why;
        std::printf("%-9s %-18s %12.2f %8s %10s %10s %14s %10.1f  failed: %s\n", label.c_str(), row_name.c_str(),
                    r.peak_gib, est, "-", "-", "-", r.wall, why.c_str());
      }
      if (json) std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
