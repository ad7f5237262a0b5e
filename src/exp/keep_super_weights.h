// RTN with the super weights held out (`keep_super_weights: true`, `--keep-super-weights`; Yu et al.
// 2024): the few down_proj scalars that create a model's massive activation are found on the FP
// model (intactkv::find_super_weights over <bos> and the paper's prompt), left out of their
// quantization groups' ranges, and kept exactly beside the packed codes (kernels::HeldOutWeight).
#pragma once
#include <vector>

#include "exp/model_setup.h"
#include "intactkv/super_weights.h"

namespace ikv::exp {

// The super weights of the FP model `fp` (its down_proj weights as stored).
std::vector<intactkv::SuperWeight> model_super_weights(const LoadedModel& fp);

// Before quantizing the fp32 weights w by groups of `group` input channels (−1 = whole rows):
// each super weight is replaced by the mean of the rest of its group, so that the group's range,
// and so every other weight's code, is what it would be without it.
void leave_out_of_groups(model::Weights& w, const std::vector<intactkv::SuperWeight>& super, int group);

// After quantizing: each super weight restored to its FP value beside the codes.
void restore_super_weights(model::Weights& w, const std::vector<intactkv::SuperWeight>& super);

}  // namespace ikv::exp
