#pragma once
// `ikv-bench kernels`: GEMV/GEMM throughput of the dense (oneDNN FP32/BF16) and packed (W4/W3)
// linear kernels at LLaMA-7B shapes, next to the DRAM bandwidth measured in the same run.
// Prints a table (json: one JSON object per line) and returns 0. About a minute on 2 cores; holds
// ~2 GB of weight copies so that GEMV streams from DRAM rather than the last-level cache.
int bench_kernels(bool json);
