#pragma once
#include <string>
// Shared-context reuse of the loglikelihood scorer: tokens run through the model vs tokens a
// scorer without reuse would run, and throughput, per task on testbed-26M (same run, same items).
int bench_tasks(bool json, const std::string& data_root);
