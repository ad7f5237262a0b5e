#pragma once
#include <string>

// Perplexity throughput of the engine (tokens/s and effective GFLOP/s; FP32, BF16 and packed W4/W3
// weights) next to oneDNN's FP32 GEMM peak at LLaMA-7B shapes and the FP32 engine, in the same run.
int bench_engine(bool json, const std::string& data_root);
