#include "quant/gptq.h"

#include "io/error.h"

namespace ikv::quant {

// Interface placeholder: the implementation lands with issue #8 (GPTQ).
GptqMatrix gptq_quantize(const float*, int64_t, int64_t, const std::vector<double>&, const GptqOptions&,
                         const std::string& what) {
  fail("gptq: not implemented yet (", what, ")");
}
void quantize_model_gptq(model::Weights&, const CalibrationTokens&, const GptqOptions&, const LayerProgress&) {
  fail("gptq: not implemented yet");
}

}  // namespace ikv::quant
