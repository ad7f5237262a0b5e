#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"
// Perplexity throughput of the engine (tokens/s and effective GFLOP/s; FP32, BF16 and packed W4/W3
// weights) next to oneDNN's FP32 GEMM peak at LLaMA-7B shapes and the FP32 engine, in the same run.
int bench_engine(bool json, const std::string& data_root);
// Useful flops per token of a window of ctx tokens: 2 per weight of every linear and the head,
// plus QKᵀ and PV over the causal half of the window.
double ppl_flops_per_token(const ikv::model::Config& c, int64_t ctx);
