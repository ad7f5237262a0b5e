// The Engine options a variant evaluates with (engine/kv_scheme.h): its KV scheme (`kv_quant:`,
// `kv_protect:`; `--kv-quant`, `--kv-protect`) and, for a quantizer with `scales: static`, the
// static activation and KV scales calibrated with the variant's IntactKV prefix in the cache.
#pragma once
#include "engine/forward.h"
#include "exp/config.h"
#include "intactkv/prefix.h"
#include "quant/layerwise.h"

namespace ikv::exp {

engine::KvScheme kv_scheme(const KvQuantSpec& kv);

// `weights` are the variant's (quantized) weights; `calib` the quantizer's calibration sequences
// (exp::calibration_tokens), read only for static scales.
engine::EngineOptions make_engine_options(const KvQuantSpec& kv, const QuantizerSpec& q, const model::Weights& weights,
                                          const intactkv::Prefix* prefix, const quant::CalibrationTokens& calib);

// One-line Error for a KV scheme the engine does not run (KIVI with sink protection, a KIVI
// group of no tokens), naming `where` (a flag or a config entry).
void validate_kv_scheme(const KvQuantSpec& kv, const std::string& where);

}  // namespace ikv::exp
