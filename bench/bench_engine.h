#pragma once
#include <string>
// Perplexity throughput of the engine (tokens/s and effective GFLOP/s) next to oneDNN's FP32 GEMM
// peak at LLaMA-7B shapes, measured in the same run.
int bench_engine(bool json, const std::string& data_root);
