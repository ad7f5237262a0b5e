// PrefixQuant's static per-tensor scales (Chen et al. 2024): with the pivot tokens moved into a
// full-precision prefix, the rest of the activations have no token that stands out, so one scale
// per tensor and layer, fixed beforehand, can replace the dynamic per-token scales of the QuaRot
// path. Calibrated here on calibration sequences with the prefix in the cache: the model runs as
// evaluated with its dynamic activation scales and a full-precision KV cache, and the range of
// every linear input before quantization (max |x|) and of every layer's K and V (min, max) is
// taken over the tokens after the prefix. Without a
// prefix the sequences' leading <bos> is one of those tokens, and its massive activation sets the
// ranges: the case PrefixQuant's prefix exists to avoid.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/forward.h"
#include "intactkv/prefix.h"

namespace ikv::intactkv {

// Sequences start with <bos>; their leading tokens that equal the prefix are covered by it, as in
// perplexity windows. `eng` runs the weights as evaluated (its own options are not used).
engine::StaticScales calibrate_static_scales(const engine::Engine& eng, const Prefix* prefix,
                                             const std::vector<std::vector<int32_t>>& sequences);

}  // namespace ikv::intactkv
