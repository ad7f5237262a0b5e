#include "exp/engine_options.h"

#include "intactkv/static_scales.h"
#include "io/error.h"

namespace ikv::exp {

engine::KvScheme kv_scheme(const KvQuantSpec& kv) {
  validate_kv_scheme(kv, "kv_quant");
  engine::KvScheme s;
  if (kv.keys == "per_channel_prerope") {
    s.keys = engine::KeyQuant::per_channel_prerope;
    s.residual = kv.residual;
    s.key_group = kv.group;
  }
  s.protect_sinks = kv.protect == "sinks";
  return s;
}

engine::EngineOptions make_engine_options(const KvQuantSpec& kv, const QuantizerSpec& q, const model::Weights& weights,
                                          const intactkv::Prefix* prefix, const quant::CalibrationTokens& calib) {
  engine::EngineOptions o;
  o.kv = kv_scheme(kv);
  if (q.static_scales()) {
    if (calib.empty()) fail("static scales: no calibration sequences (", q.data, ")");
    o.scales = intactkv::calibrate_static_scales(engine::Engine(weights), prefix, calib);
  }
  return o;
}

void validate_kv_scheme(const KvQuantSpec& kv, const std::string& where) {
  if (kv.keys != "per_token" && kv.keys != "per_channel_prerope")
    fail(where, ": keys '", kv.keys, "' is not supported (per_token, per_channel_prerope)");
  if (kv.protect != "none" && kv.protect != "sinks") fail(where, ": kv_protect '", kv.protect, "' is not supported (none, sinks)");
  if (kv.keys == "per_channel_prerope" && kv.protect != "none")
    fail(where, ": sink protection applies to the per-token KV quantizer, not to per_channel_prerope keys");
  if (kv.residual < 0 || kv.group < 1) fail(where, ": residual must be ≥ 0 and group ≥ 1");
}

}  // namespace ikv::exp
