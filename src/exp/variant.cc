#include "exp/variant.h"

#include <omp.h>

#include "engine/forward.h"
#include "intactkv/inspect.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "io/data_root.h"
#include "quant/artifact.h"
#include "quant/packed_matrix.h"
#include "quant/rtn.h"

namespace ikv::exp {

std::string QuantChoice::label() const {
  if (method == "fp") return "FP16";
  std::string m = method == "rtn" ? "RTN" : method;
  return m + " W" + std::to_string(wbits) + (group > 0 ? "g" + std::to_string(group) : "") + (sym ? " sym" : "");
}

void validate_variant(const VariantSpec& s) {
  if (s.quant.method != "fp" && s.quant.method != "rtn")
    fail("--quant '", s.quant.method, "' is not supported (fp, rtn)");
  if (s.quant.method != "fp" && (s.quant.wbits < 2 || s.quant.wbits > 8))
    fail("--wbits ", s.quant.wbits, " is out of range (2..8)");
  if (s.quant.group == 0 || s.quant.group < -1) fail("--group ", s.quant.group, " must be positive or -1");
  if (s.kv_bits != 16 && (s.kv_bits < 2 || s.kv_bits > 8)) fail("--kv-bits ", s.kv_bits, " must be 2..8 or 16");
  if (s.intactkv_size < 0) fail("IntactKV size ", s.intactkv_size, " must be >= 0");
}

void quantize_weights(model::Weights& w, const QuantChoice& q) {
  if (q.method == "fp") return;
  quant::QuantSpec spec;
  spec.bits = q.wbits;
  spec.group = q.group;
  spec.sym = q.sym;
  auto linears = model::named_linears(w);
  for (auto& nl : linears) quant::validate_spec(spec, nl.linear->in, nl.name);  // fail before any work
  for (auto& nl : linears) {
    kernels::Linear& l = *nl.linear;
    std::vector<float> dense = kernels::linear_dense_weight(l);
    l.packed = std::make_shared<quant::PackedMatrix>(quant::quantize_rtn(dense.data(), l.out, l.in, spec, nl.name));
    l.w.clear();
    l.w.shrink_to_fit();
    l.w_bf16.clear();
  }
}

PreparedVariant prepare_variant(const std::string& data_root, const VariantSpec& spec) {
  validate_variant(spec);
  PreparedVariant v;
  // Quantizers read the checkpoint at full fp32 precision, whatever the dense compute dtype.
  v.model = load_model_verified(data_root, spec.model, spec.quant.method == "fp" ? spec.dtype : "fp32");
  const model::Weights& w = v.model.weights;
  if (spec.intactkv != "none") {
    engine::Engine fp(w);
    const model::Tokenizer& tok = *v.model.tokenizer;
    if (spec.intactkv == "auto") {
      const std::string text = spec.auto_text.empty() ? intactkv::kVicunaSystemPrompt : spec.auto_text;
      std::vector<int32_t> ids = intactkv::prefix_tokens("prompt:" + text, tok, w.config.bos_id);
      intactkv::PivotReport rep = intactkv::inspect_pivots(fp, tok, ids);
      intactkv::AutoSize a = intactkv::auto_prefix_size(rep, static_cast<int64_t>(ids.size()));
      ids.resize(a.size);
      v.prefix = intactkv::build_prefix(fp, ids);
      v.intactkv_note = a.explanation;
    } else if (intactkv::is_prefix_spec(spec.intactkv)) {
      v.prefix = intactkv::build_prefix(
          fp, intactkv::prefix_tokens(spec.intactkv, tok, w.config.bos_id, spec.intactkv_size));
    } else {
      v.prefix = intactkv::load_prefix(spec.intactkv, w.config, w.fingerprint);
    }
    v.prefix->settings["prefix"] = spec.intactkv;
  }
  if (!spec.quantized_file.empty())
    quant::load_quantized(v.model.weights, io::data_file("", spec.quantized_file));
  else
    quantize_weights(v.model.weights, spec.quant);
  return v;
}

}  // namespace ikv::exp
