#include "quant/awq.h"

#include "io/error.h"

namespace ikv::quant {

// Interface placeholder: the implementation lands with issue #8 (AWQ).
void quantize_model_awq(model::Weights&, const CalibrationTokens&, const AwqOptions&, const LayerProgress&) {
  fail("awq: not implemented yet");
}

}  // namespace ikv::quant
