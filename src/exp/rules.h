// The value rules of every setting that both a YAML config and a command-line flag can give, so the
// two accept exactly the same values (config.cc reads YAML through them; apps/cli_common.h turns
// them into CLI11 validators).
#pragma once
#include <thread>

#include "exp/schema_check.h"

namespace ikv::exp::rules {

inline const Rule kBits = between(2, 8);
inline const Rule kGroup = [](double v) { return v == -1 || v > 0 ? "" : "-1 or positive"; };
inline const Rule kBitsOrOff = [](double v) { return (v >= 2 && v <= 8) || v == 16 ? "" : "between 2 and 8, or 16"; };
inline const Rule kClip = [](double v) { return v > 0 && v <= 1 ? "" : "in (0, 1]"; };
inline const Rule kPositiveReal = [](double v) { return v > 0 ? "" : "positive"; };
inline const Rule kCtx = at_least(3);        // a window scores ctx/2 tokens after its first half
inline const Rule kCount = at_least(0);      // windows, limits, shots, sizes: 0 = all / none
inline const Rule kSamples = at_least(1);
inline const Rule kSeqLen = at_least(2);
// More OpenMP threads than a few per hardware thread only thrash, and libgomp crashes creating
// 100000 of them; 0 = all cores.
inline Rule threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return between(0, 4.0 * (hw ? hw : 1));
}

}  // namespace ikv::exp::rules
