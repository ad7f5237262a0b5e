#pragma once
#include <string>
// `ikv-bench quantize`: the cost of the weight quantizers.
//  (a) wall time to quantize testbed-26M at W3g128 with RTN, GPTQ and AWQ (the calibrated ones on
//      64 ShareGPT samples of up to 512 tokens; the token count is printed), and the time per layer;
//  (b) GPTQ at LLaMA-7B shapes (dim 4096, hidden 11008, 32 heads) on one synthetic random decoder
//      layer fed one 1024-token sequence: capture forward, Hessian accumulation, the inverse-Hessian
//      factor per input (4096 and 11008 wide), the solve per matrix (4096x4096, 11008x4096,
//      4096x11008) and the quantized re-run, extrapolated to 32 layers and 128 x 2048 calibration
//      tokens with the formula printed.
// Table on stdout (json: one JSON object per line as well); returns 0. About 3 minutes on 2 idle
// cores (AWQ is half of it; the 7B layer needs about 5 GB of memory).
int bench_quantize(bool json, const std::string& data_root);
