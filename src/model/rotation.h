// The orthogonal transforms a QuaRot-rotated model applies online (quant/quarot.h makes them):
// the engine rotates q and k per head after RoPE and down_proj's input; IntactKV prefixes and FP
// residual streams are mapped into the rotated model's coordinates with them.
#pragma once
#include <cstdint>

#include "kernels/hadamard.h"

namespace ikv::model {

struct Rotation {
  uint64_t seed = 0;
  kernels::HadamardTransform residual;  // Q [dim]: random signs drawn from seed
  kernels::HadamardTransform head;      // H_hd [head_dim]
  kernels::HadamardTransform down;      // H_f [hidden]
};

}  // namespace ikv::model
