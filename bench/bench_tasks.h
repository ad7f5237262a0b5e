#pragma once
#include <string>
// The loglikelihood scorer's throughput (tokens run per second) per task next to the engine's
// perplexity throughput in the same run, on testbed-26M and on a 1B-class shape with random weights;
// and its context reuse (tokens run vs tokens a scorer without reuse would run).
// which: "testbed" | "1b" | "all".
int bench_tasks(bool json, const std::string& data_root, const std::string& which = "all");
