// The layer reconstruction error study (`ikv-eval quant-error`): each weight quantizer's relative
// output error per decoder linear, on held-out activations of the FP model (quant/recon_error.h).
// Runs return data; quant_error_markdown and quant_error_json render it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "exp/config.h"

namespace ikv::exp {

struct QuantErrorSettings {
  std::string model;
  // The settings every method shares (method is ignored): W3 g128 asymmetric by default.
  QuantizerSpec quant = [] {
    QuantizerSpec q;
    q.method = "rtn", q.wbits = 3;
    return q;
  }();
  std::vector<std::string> methods;   // rtn first (the baseline), then gptq / awq
  std::string heldout = "wikitext2";  // text for the activations; never the calibration data
  int64_t tokens = 8192, ctx = 512;
};

struct QuantErrorMethod {
  std::string method;
  std::vector<double> error;  // per linear; empty when the method failed
  std::string failure;        // why a calibrated method failed (RTN failing is an Error)
  double seconds = 0;         // quantization time
};

struct QuantErrorResult {
  std::vector<std::string> linears;  // HF names, in model order
  std::vector<QuantErrorMethod> methods;
  int64_t heldout_tokens = 0;
  size_t calib_sequences = 0;
  int64_t calib_tokens = 0;
};

// "rtn,gptq" -> {"rtn", "gptq"}: RTN always first; an unknown name is an Error.
std::vector<std::string> quant_error_methods(const std::string& list);
QuantErrorResult run_quant_error(const std::string& data_root, const QuantErrorSettings& s);
// The table (one row per linear, a column per method, † where not below RTN), its caption and
// `command` (how it was generated).
std::string quant_error_markdown(const QuantErrorSettings& s, const QuantErrorResult& r, const std::string& command);
nlohmann::json quant_error_json(const QuantErrorSettings& s, const QuantErrorResult& r);

}  // namespace ikv::exp
