#pragma once
#include <string>
#include <vector>
// Perplexity at real model sizes: each configuration runs `ikv-eval ppl` on a checkpoint (e.g. one
// written by `ikv-eval synth`) in a process of its own, so that its peak resident memory is its
// own (wait4's ru_maxrss); tokens/s and PPL come from the run's JSON, GFLOP/s count 2 per weight of
// every linear and the head plus causal attention. With a baseline build the same rows run with it
// too, interleaved, for an A/B on one machine state.
struct ScaleBenchOptions {
  std::string model;                                          // checkpoint folder
  std::vector<std::string> rows = {"fp32", "bf16", "rtn-w4-q8"};  // fp32 | bf16 | q8 | rtn-wB[-DTYPE], +lm, +wm, +headB
  long ctx = 512, windows = 2;
  int threads = 0;        // 0 = every core
  std::string eval;       // the ikv-eval to measure; default: the one next to ikv-bench
  std::string baseline;   // another ikv-eval build to run the same rows with ("" = none)
  double mem_limit_gb = 0;  // address-space cap per run (mappings count: a 13B checkpoint maps 26 GB); 0 = none
  std::string data_root;
};
int bench_scale(bool json, const ScaleBenchOptions& opt);
