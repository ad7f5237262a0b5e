#pragma once
#include <string>
// `ikv-bench calibrate`: the cost of IntactKV calibration (intactkv/calibrate.h) on testbed-26M,
// RTN W3g128, the vicuna prefix, ShareGPT samples of up to 512 tokens: the FP targets, the loss
// forward, forward + backward per sample, the backward/forward ratio, and the time of an epoch of
// 128 samples extrapolated from a scaled-down count (printed with the factor). Table on stdout
// (json: one JSON object per line as well); returns 0. About half a minute on 2 cores.
int bench_calibrate(bool json, const std::string& data_root);
