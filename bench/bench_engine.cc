#include "bench_engine.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/forward.h"
#include "eval/perplexity.h"
#include "exp/estimate.h"
#include "exp/model_setup.h"
#include "exp/variant.h"
#include "io/mapped_file.h"
#include "kernels/gemm.h"

using namespace ikv;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}


struct GemmRow {
  int64_t M, K, N;
  double gflops;
};

GemmRow bench_gemm(int64_t M, int64_t K, int64_t N) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> X(M * K), W(N * K), Y(M * N);
  for (auto& v : X) v = u(rng);
  for (auto& v : W) v = u(rng);
  kernels::gemm_f32(X.data(), M, K, W.data(), N, Y.data());  // JIT + warm-up
  int reps = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (reps < 3 || seconds_since(t0) < 0.5) {
    kernels::gemm_f32(X.data(), M, K, W.data(), N, Y.data());
    ++reps;
  }
  return {M, K, N, 2.0 * M * K * N * reps / seconds_since(t0) / 1e9};
}

}  // namespace

int bench_engine(bool json, const std::string& data_root) {
  const int max_threads = omp_get_max_threads();
  double peak = 0;
  std::printf("FP32 GEMM (oneDNN), %d threads\n%-8s %-14s %10s\n", max_threads, "M", "K x N", "GFLOP/s");
  for (auto [K, N] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 11008}, {11008, 4096}}) {
    GemmRow r = bench_gemm(512, K, N);
    peak = std::max(peak, r.gflops);
    std::printf("%-8lld %-14s %10.1f\n", (long long)r.M, (std::to_string(K) + "x" + std::to_string(N)).c_str(), r.gflops);
    if (json)
      std::printf("%s\n", nlohmann::json({{"bench", "gemm_f32"}, {"M", r.M}, {"K", K}, {"N", N}, {"gflops", r.gflops}})
                              .dump()
                              .c_str());
  }

  const int64_t ctx = 512, windows = 4;
  std::printf("\nPerplexity throughput, testbed-26M, WikiText-2, ctx %lld, %lld windows\n", (long long)ctx,
              (long long)windows);
  std::printf("%-11s %-8s %12s %10s %14s %12s\n", "weights", "threads", "tokens/s", "GFLOP/s", "vs GEMM peak",
              "vs FP32");
  std::vector<int32_t> stream;
  double fp32_tps = 0;  // the FP32 engine with every thread: the packed rows' baseline
  // Packed W4/W3 (RTN g128) run the same windows through the packed GEMM kernels; w4g128-q8 with
  // q8 activations through the tiled vpdpbusd kernel (--dtype q8).
  for (const char* dtype : {"fp32", "bf16", "w4g128", "w3g128", "w4g128-q8"}) {
    const bool packed = dtype[0] == 'w';
    exp::LoadedModel m = exp::load_model_verified(data_root, "testbed-26M", packed ? "fp32" : dtype);
    if (packed) exp::quantize_weights(m.weights, exp::rtn_spec(dtype[1] - '0', 128));
    if (std::string(dtype).ends_with("-q8")) exp::apply_dtype(m.weights, "q8");
    if (stream.empty())
      stream = eval::perplexity_stream(
          *m.tokenizer, io::read_text_file(exp::resolve_text_dataset(data_root, "wikitext2")).substr(0, 200000),
          m.weights.config.bos_id);
    engine::Engine eng(m.weights);
    for (int threads : {1, max_threads}) {
      if (packed && threads != max_threads) continue;  // compared with FP32 at every thread only
      omp_set_num_threads(threads);
      eval::PerplexityOptions opt;
      opt.ctx = ctx;
      opt.windows = 1;
      opt.progress = false;
      eval::perplexity(eng, stream, opt);  // warm-up: JIT and page faults
      opt.windows = windows;
      eval::PerplexityResult r = eval::perplexity(eng, stream, opt);
      const double gflops = r.tokens_per_second * exp::flops_per_token(m.weights.config, ctx) / 1e9;
      // The GEMM peak was measured with every thread: compare only the all-threads rows to it.
      if (threads == max_threads && std::string(dtype) == "fp32") fp32_tps = r.tokens_per_second;
      const double vs_fp32 = threads == max_threads ? r.tokens_per_second / fp32_tps : 0;
      if (threads == max_threads)
        std::printf("%-11s %-8d %12.0f %10.1f %13.2fx %11.2fx\n", dtype, threads, r.tokens_per_second, gflops,
                    peak / gflops, vs_fp32);
      else
        std::printf("%-11s %-8d %12.0f %10.1f %14s %12s\n", dtype, threads, r.tokens_per_second, gflops, "-", "-");
      if (json)
        std::printf("%s\n", nlohmann::json({{"bench", "ppl"}, {"weights", dtype}, {"threads", threads},
                                            {"tokens_per_second", r.tokens_per_second}, {"gflops", gflops},
                                            {"gemm_peak_gflops", peak}, {"peak_over_engine", peak / gflops},
                                            {"over_fp32_engine", vs_fp32}})
                                .dump()
                                .c_str());
      if (threads == max_threads) break;
    }
  }
  omp_set_num_threads(max_threads);
  return 0;
}
