// Kernel throughput next to the machine's measured limits, all in one run:
//   DRAM   STREAM triad, 2 threads, arrays 12x the LLC, counted as STREAM does (3 x 4 bytes/elem),
//          run between the timed runs of every M <= 16 row (the bandwidth a shared machine offers
//          drifts), each row judged against its own best; a read-only stream, run alongside the
//          same way, is shown for context;
//   FP32   oneDNN matmul, weights reordered once into oneDNN's preferred layout (and, at M=512,
//          also tried in the engine's plain [N,K] layout; the faster of the two is the baseline);
//   BF16   oneDNN matmul with bf16 X and W, f32 Y, weights prepacked the same way;
//   W4/W3  kernels::packed_matmul on RTN asym group-128 matrices, fp32 activations (exact);
//   W4bf16/W3bf16 (M <= 16) the same with bf16 activations (--dtype bf16: vdpbf16ps).
//   W4q8/W3q8 the same matrices as Q8Tiles with q8 activations (--dtype q8: int8 blocks of 128,
//          vpdpbusd on 16 rows per register; kernels/q8_tiles.h), the quantization of X included.
//   I8     (M = 512) kernels::int8_gemm, oneDNN s8 x s8 -> s32 with the scales applied after, on
//          INT4 codes (RTN sym per-channel W, X quantized per token beforehand): GFLOP/s-equivalent
//   W4A4   (M = 512) the same plus the per-token quantization of X: what a QuaRot linear runs
// Shapes are LLaMA-7B's linears (K x N = 4096x4096, 4096x11008, 11008x4096) at M = 1 (decode),
// 16 and 512 (prefill). For M <= 16 each timed run cycles through enough weight copies (>320 MB)
// that the weights come from DRAM, not the 32 MB LLC. Times are the best of a few runs.
// GB/s counts weight bytes (packed codes + fp16 scales + zero points for W4/W3; the tiled copy's
// own codes and constants for q8, the same bytes to within 1%).
// "% of target": M=1 W4 / W3 against 80% / 70% of DRAM, M=512 W4 / W3 against 90% of FP32;
// other rows against their roofline (DRAM for M=1) or FP32 at the same shape.
#include "bench_kernels.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "io/dtype.h"
#include "kernels/int8_gemm.h"
#include "kernels/packed_matmul.h"
#include "kernels/q8_tiles.h"
#include "quant/rtn.h"

namespace {

using Clock = std::chrono::steady_clock;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

constexpr double kStreamBytes = 320e6;  // weight bytes per timed GEMV run: 10x the LLC

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best wall time of fn over at least min_reps runs and min_total seconds, after one warm-up.
double best_seconds(const std::function<void()>& fn, int min_reps = 3, double min_total = 0.25) {
  fn();
  double best = 1e30, total = 0;
  for (int r = 0; r < min_reps || (total < min_total && r < 50); ++r) {
    const auto t0 = Clock::now();
    fn();
    const double t = seconds_since(t0);
    best = std::min(best, t);
    total += t;
  }
  return best;
}

// STREAM triad a = b + q·c over 2^25 floats per array (3 x 128 MB), counted as STREAM counts it
// (12 bytes per element; the write-allocate read of a is not counted).
class TriadProbe {
 public:
  TriadProbe() : a_(kN), b_(kN), c_(kN) {
    float *pa = a_.data(), *pb = b_.data(), *pc = c_.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kN; ++i) pa[i] = 0, pb[i] = 1, pc[i] = 2;
  }
  double run_gbps() {  // one pass
    float* pa = a_.data();
    const float *pb = b_.data(), *pc = c_.data();
    const auto t0 = Clock::now();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kN; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    const double gbps = 12.0 * static_cast<double>(kN) / seconds_since(t0) / 1e9;
    best_ = std::max(best_, gbps);
    return gbps;
  }
  double best() const { return best_; }  // over every pass so far

 private:
  static constexpr int64_t kN = int64_t{1} << 25;
  std::vector<float> a_, b_, c_;
  double best_ = 0;
};

// Read-only streaming over 256 MB: the roofline a GEMV actually faces, printed next to the triad
// for context. Each thread reads four far-apart stretches side by side, prefetching into L2 (one
// sequential stream per core gets only ~2/3 of this on the development machine).
class ReadProbe {
 public:
  ReadProbe() : a_(kN) {
    float* pa = a_.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kN; ++i) pa[i] = 1;
  }
  double run_gbps() {  // one pass
    const float* pa = a_.data();
    const int64_t lines = kN / 16;
    const auto t0 = Clock::now();
    float sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      const int64_t begin = lines * t / T, stretch = (lines * (t + 1) / T - begin) / 4;
      float part[4][16] = {};
      for (int64_t i = 0; i < stretch; ++i)
        for (int s = 0; s < 4; ++s) {
          const float* line = pa + 16 * (begin + s * stretch + i);
          __builtin_prefetch(line + 16 * 32, 0, 2);  // 2 KB ahead, into L2
#pragma omp simd
          for (int j = 0; j < 16; ++j) part[s][j] += line[j];
        }
      for (int s = 0; s < 4; ++s)
        for (int j = 0; j < 16; ++j) sum += part[s][j];
    }
    const double gbps = 4.0 * static_cast<double>(kN) / seconds_since(t0) / 1e9;
    if (sum == 0.5f) std::printf(" ");  // keep the sums alive
    best_ = std::max(best_, gbps);
    return gbps;
  }
  double best() const { return best_; }  // over every pass so far

 private:
  static constexpr int64_t kN = int64_t{1} << 26;
  std::vector<float> a_;
  double best_ = 0;
};

struct Probes {
  TriadProbe triad;
  ReadProbe read;
};

// Best kernel time, best triad and best read-only bandwidth, the three interleaved run by run: the
// bandwidth a shared machine offers changes from second to second, so a GEMV is judged against the
// DRAM of its own moments. At least a second of each, so that all see the machine's quiet moments.
struct Interleaved {
  double seconds, dram_gbps = 0, read_gbps = 0;
};
Interleaved best_interleaved(const std::function<void()>& fn, Probes& probes) {
  fn();
  double best = 1e30, dram = 0, read = 0, total = 0;
  for (int r = 0; r < 4 || (total < 1.0 && r < 100); ++r) {
    dram = std::max(dram, probes.triad.run_gbps());
    read = std::max(read, probes.read.run_gbps());
    const auto t0 = Clock::now();
    fn();
    const double t = seconds_since(t0);
    best = std::min(best, t);
    total += t;
  }
  return {best, dram, read};
}

// Uniform values in [-a, a] from a hash of the index: fast, parallel, reproducible.
void fill_uniform(float* p, int64_t n, float a, uint64_t seed) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t h = (static_cast<uint64_t>(i) + seed) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    p[i] = a * (static_cast<float>(h & 0xFFFFFF) / 8388608.0f - 1.0f);
  }
}

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

int64_t copies_for(double bytes, int64_t M) {
  return M > 16 ? 1 : std::max<int64_t>(2, static_cast<int64_t>(std::ceil(kStreamBytes / bytes)));
}

// Seconds per Y = X·Wᵀ with oneDNN, the weights W[N,K] (fp32, plain) converted to `wt` and either
// reordered into the primitive's preferred layout (prepacked) or left in the plain "ba" layout.
Interleaved dense_seconds(const std::vector<float>& W, const std::vector<float>& X, int64_t M, int64_t K,
                          int64_t N, dt wt, bool prepacked, Probes& probes) {
  dnnl::stream s(cpu_engine());
  const dnnl::memory::desc x_md({M, K}, wt, tag::ab), y_md({M, N}, dt::f32, tag::ab);
  const dnnl::memory::desc w_any({K, N}, wt, prepacked ? tag::any : tag::ba);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(x_md, w_any, y_md), cpu_engine());
  dnnl::matmul mm(pd);
  // Source tensors in the compute dtype (conversion is not timed).
  dnnl::memory x_f32({{M, K}, dt::f32, tag::ab}, cpu_engine(), const_cast<float*>(X.data()));
  dnnl::memory w_f32({{K, N}, dt::f32, tag::ba}, cpu_engine(), const_cast<float*>(W.data()));
  dnnl::memory x_mem(x_md, cpu_engine()), y_mem(y_md, cpu_engine());
  dnnl::reorder(x_f32, x_mem).execute(s, x_f32, x_mem);
  const double bytes = static_cast<double>(K) * N * (wt == dt::f32 ? 4 : 2);
  std::vector<dnnl::memory> weights;
  for (int64_t c = 0; c < copies_for(bytes, M); ++c) {
    weights.emplace_back(pd.weights_desc(), cpu_engine());
    if (c == 0) {
      dnnl::reorder(w_f32, weights[0]).execute(s, w_f32, weights[0]);
      s.wait();
    } else {
      const size_t size = pd.weights_desc().get_size();
      std::copy_n(static_cast<const char*>(weights[0].get_data_handle()), size,
                  static_cast<char*>(weights[c].get_data_handle()));
    }
  }
  s.wait();
  auto run = [&] {
    for (const dnnl::memory& w : weights)
      mm.execute(s, {{DNNL_ARG_SRC, x_mem}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y_mem}});
    s.wait();
  };
  Interleaved t = M <= 16 ? best_interleaved(run, probes) : Interleaved{best_seconds(run)};
  t.seconds /= static_cast<double>(weights.size());
  return t;
}

Interleaved packed_seconds(const ikv::kernels::PackedMatrix& W, const std::vector<float>& X, int64_t M,
                           Probes& probes, ikv::kernels::Activations act = ikv::kernels::Activations::kFp32) {
  const double bytes = static_cast<double>(ikv::kernels::packed_bytes(W));
  std::vector<ikv::kernels::PackedMatrix> copies(copies_for(bytes, M), W);
  std::vector<float> Y(M * W.rows);
  auto run = [&] {
    for (const auto& w : copies) ikv::kernels::packed_matmul(w, X.data(), M, Y.data(), ikv::kernels::Isa::kAuto, act);
  };
  Interleaved t = M <= 16 ? best_interleaved(run, probes) : Interleaved{best_seconds(run)};
  t.seconds /= static_cast<double>(copies.size());
  return t;
}

Interleaved tiled_seconds(const ikv::kernels::Q8Tiles& W, const std::vector<float>& X, int64_t M, Probes& probes) {
  std::vector<ikv::kernels::Q8Tiles> copies(copies_for(static_cast<double>(ikv::kernels::q8_tiles_bytes(W)), M), W);
  std::vector<float> Y(M * W.rows);
  auto run = [&] {
    for (const auto& w : copies) ikv::kernels::q8_tiles_matmul(w, X.data(), M, Y.data());
  };
  Interleaved t = M <= 16 ? best_interleaved(run, probes) : Interleaved{best_seconds(run)};
  t.seconds /= static_cast<double>(copies.size());
  return t;
}

// Seconds per Y = X·Wᵀ on INT4 codes through the int8 GEMM; with `quantize` the per-token
// quantization of X is timed too.
double int8_seconds(const ikv::kernels::Int8Matrix& W, const std::vector<float>& X, int64_t M, bool quantize) {
  std::vector<int8_t> xq(M * W.cols);
  std::vector<float> sx(M), Y(M * W.rows);
  ikv::kernels::quantize_per_token(X.data(), M, W.cols, 4, 1.0f, xq.data(), sx.data());
  return best_seconds([&] {
    if (quantize) ikv::kernels::quantize_per_token(X.data(), M, W.cols, 4, 1.0f, xq.data(), sx.data());
    ikv::kernels::int8_gemm(xq.data(), sx.data(), M, W, Y.data());
  });
}

struct Row {
  std::string kernel;
  int64_t M, K, N;
  double seconds, bytes;
  double dram = 0;       // M <= 16: best triad bandwidth measured between this row's runs
  double read = 0;       // M <= 16: best read-only bandwidth measured between this row's runs
  double pct = 0;        // of target
  std::string target;    // what the percentage is relative to
  double gflops() const { return 2.0 * M * K * N / seconds / 1e9; }
  double gbps() const { return bytes / seconds / 1e9; }
};

}  // namespace

int bench_kernels(bool json) {
  const auto t_start = Clock::now();
  const int threads = omp_get_max_threads();
  Probes probes;

  const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {4096, 11008}, {11008, 4096}};
  const std::vector<int64_t> Ms = {1, 16, 512};
  std::vector<Row> rows;
  auto add = [&](const char* kernel, int64_t M, int64_t K, int64_t N, Interleaved t, double bytes) {
    rows.push_back({kernel, M, K, N, t.seconds, bytes, t.dram_gbps, t.read_gbps, 0, ""});
  };
  for (auto [K, N] : shapes) {
    std::vector<float> W(K * N);
    fill_uniform(W.data(), K * N, 0.05f, 1);
    const ikv::kernels::PackedMatrix w4 = ikv::quant::quantize_rtn(W.data(), N, K, {4, 128, false}, "bench.w4");
    const ikv::kernels::PackedMatrix w3 = ikv::quant::quantize_rtn(W.data(), N, K, {3, 128, false}, "bench.w3");
    const ikv::kernels::Int8Matrix i8 =
        ikv::kernels::int8_from_packed(ikv::quant::quantize_rtn(W.data(), N, K, {4, -1, true}, "bench.i8"));
    for (int64_t M : Ms) {
      std::vector<float> X(M * K);
      fill_uniform(X.data(), M * K, 1.0f, 2 + M);
      Interleaved fp32 = dense_seconds(W, X, M, K, N, dt::f32, true, probes);
      if (M > 16) fp32.seconds = std::min(fp32.seconds, dense_seconds(W, X, M, K, N, dt::f32, false, probes).seconds);
      add("FP32", M, K, N, fp32, 4.0 * K * N);
      add("BF16", M, K, N, dense_seconds(W, X, M, K, N, dt::bf16, true, probes), 2.0 * K * N);
      add("W4", M, K, N, packed_seconds(w4, X, M, probes), static_cast<double>(ikv::kernels::packed_bytes(w4)));
      add("W3", M, K, N, packed_seconds(w3, X, M, probes), static_cast<double>(ikv::kernels::packed_bytes(w3)));
      if (M <= 16) {
        using ikv::kernels::Activations;
        add("W4bf16", M, K, N, packed_seconds(w4, X, M, probes, Activations::kBf16),
            static_cast<double>(ikv::kernels::packed_bytes(w4)));
        add("W3bf16", M, K, N, packed_seconds(w3, X, M, probes, Activations::kBf16),
            static_cast<double>(ikv::kernels::packed_bytes(w3)));
      }
      if (ikv::kernels::q8_tiles_runs_here())
        for (const auto* w : {&w4, &w3}) {
          const ikv::kernels::Q8Tiles tiles = ikv::kernels::tile_for_q8(*w);
          add(w->bits == 4 ? "W4q8" : "W3q8", M, K, N, tiled_seconds(tiles, X, M, probes),
              static_cast<double>(ikv::kernels::q8_tiles_bytes(tiles)));
        }
      if (M == 512) {
        add("I8", M, K, N, {int8_seconds(i8, X, M, false)}, 1.0 * K * N);
        add("W4A4", M, K, N, {int8_seconds(i8, X, M, true)}, 1.0 * K * N);
      }
    }
  }
  const double dram = probes.triad.best(), dram_read = probes.read.best();

  // Targets.
  std::map<std::tuple<int64_t, int64_t, int64_t>, double> fp32_gflops;
  for (const Row& r : rows)
    if (r.kernel == "FP32") fp32_gflops[{r.M, r.K, r.N}] = r.gflops();
  for (Row& r : rows) {
    const double fp32 = fp32_gflops[{r.M, r.K, r.N}];
    if (r.M == 1) {
      const bool w4 = r.kernel.starts_with("W4"), w3 = r.kernel.starts_with("W3");
      const double frac = w4 ? 0.8 : w3 ? 0.7 : 1.0;
      r.pct = 100.0 * r.gbps() / (frac * r.dram);
      r.target = frac == 1.0 ? "DRAM" : (w4 ? "80% DRAM" : "70% DRAM");
    } else {
      const double frac = (r.M >= 64 && (r.kernel == "W4" || r.kernel == "W3")) ? 0.9 : 1.0;
      r.pct = 100.0 * r.gflops() / (frac * fp32);
      r.target = frac == 1.0 ? "FP32 same shape" : "90% FP32";
    }
  }

  auto find = [&](const std::string& kernel, int64_t M, int64_t K, int64_t N) -> const Row& {
    for (const Row& r : rows)
      if (r.kernel == kernel && r.M == M && r.K == K && r.N == N) return r;
    return rows.front();
  };
  struct Ratio {
    std::string name;
    int64_t K, N;
    double value;
    double vs_read = 0;  // GEMV rows: the same against the read-only stream measured alongside
    double dram = 0;     // GEMV rows: the triad bandwidth measured alongside
  };
  std::vector<Ratio> ratios;
  for (auto [K, N] : shapes) {
    for (const char* kernel : {"W4", "W3", "W4bf16", "W3bf16", "W4q8", "W3q8"}) {
      const Row& r = find(kernel, 1, K, N);
      if (r.kernel != kernel) continue;  // q8 rows need VNNI
      ratios.push_back({std::string(kernel) + "-GEMV/DRAM", K, N, r.gbps() / r.dram, r.gbps() / r.read, r.dram});
    }
    ratios.push_back({"W4-GEMM/FP32-GEMM (M=512)", K, N, find("W4", 512, K, N).gflops() / find("FP32", 512, K, N).gflops()});
    ratios.push_back({"W3-GEMM/FP32-GEMM (M=512)", K, N, find("W3", 512, K, N).gflops() / find("FP32", 512, K, N).gflops()});
    if (find("W4q8", 512, K, N).kernel == "W4q8")
      ratios.push_back({"W4q8-GEMM/FP32-GEMM (M=512)", K, N, find("W4q8", 512, K, N).gflops() / find("FP32", 512, K, N).gflops()});
    ratios.push_back({"I8-GEMM/FP32-GEMM (M=512)", K, N, find("I8", 512, K, N).gflops() / find("FP32", 512, K, N).gflops()});
    ratios.push_back({"W4A4-linear/FP32-GEMM (M=512)", K, N, find("W4A4", 512, K, N).gflops() / find("FP32", 512, K, N).gflops()});
  }

  if (json) {
    std::printf("%s\n", nlohmann::json{{"bench", "kernels"}, {"metric", "dram_triad_gbps"}, {"value", dram},
                                       {"threads", threads}}.dump().c_str());
    std::printf("%s\n", nlohmann::json{{"bench", "kernels"}, {"metric", "dram_read_gbps"}, {"value", dram_read},
                                       {"threads", threads}}.dump().c_str());
    for (const Row& r : rows)
      std::printf("%s\n", nlohmann::json{{"bench", "kernels"}, {"kernel", r.kernel}, {"M", r.M}, {"K", r.K},
                                         {"N", r.N}, {"ms", r.seconds * 1e3}, {"gflops", r.gflops()},
                                         {"gbps", r.gbps()}, {"dram_gbps", r.dram}, {"read_gbps", r.read}, {"pct_of_target", r.pct},
                                         {"target", r.target}}
                                 .dump()
                                 .c_str());
    for (const Ratio& q : ratios)
      std::printf("%s\n", nlohmann::json{{"bench", "kernels"}, {"metric", q.name}, {"K", q.K}, {"N", q.N},
                                         {"value", q.value}, {"dram_gbps", q.dram}, {"vs_read_only", q.vs_read}}
                                 .dump()
                                 .c_str());
    return 0;
  }
  std::printf("%-6s %5s %12s %10s %9s %8s %12s  %s\n", "kernel", "M", "KxN", "ms", "GFLOP/s", "GB/s",
              "% of target", "target");
  for (const Row& r : rows) {
    const std::string shape = std::to_string(r.K) + "x" + std::to_string(r.N);
    std::printf("%-6s %5lld %12s %10.3f %9.1f %8.1f %11.0f%%  %s\n", r.kernel.c_str(), static_cast<long long>(r.M),
                shape.c_str(), r.seconds * 1e3, r.gflops(), r.gbps(), r.pct, r.target.c_str());
  }
  std::printf("\nDRAM bandwidth, %d threads: STREAM triad %.1f GB/s, read-only stream %.1f GB/s (best of\n"
              "every pass; each GEMV row is judged against the passes run between its own runs)\n",
              threads, dram, dram_read);
  for (const Ratio& q : ratios) {
    std::printf("%-30s %5lldx%-5lld %6.2f", q.name.c_str(), static_cast<long long>(q.K), static_cast<long long>(q.N), q.value);
    if (q.dram > 0) std::printf("   (triad alongside %.1f GB/s; %.2f of the read-only stream alongside)", q.dram, q.vs_read);
    std::printf("\n");
  }
  std::printf("(%.0f s)\n", seconds_since(t_start));
  return 0;
}
