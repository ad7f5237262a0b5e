// IntactKV calibration (the paper's §3.3, the reference's intactkv_train.py): train the prefix
// keys and values of every layer so that the quantized model's decoder-layer outputs come closer
// to the full-precision model's on calibration data; everything else stays frozen.
//
//   targets   the FP model's residual stream after every layer at each sample's loss tokens,
//             computed once (fp16, in memory or, beyond a budget, in a file beside the output)
//   loss      Σ_layers mean((h_q − h_fp)²)/2 over loss tokens × dim (intactkv/backward.h)
//   optimizer AdamW (β 0.9/0.999, eps 1e-8, weight decay 0: HF Trainer's defaults), lr 2e-4 constant
//             after a linear warm-up over the first 3% of steps, global grad-norm clip 0.3, batch 1
//             with 16 accumulation steps, 20 epochs of 128 samples = 160 steps
//
// Files beside OUT.ikv.safetensors (OUT = the output path without .ikv.safetensors):
//   OUT.ckpt.safetensors  after every epoch: prefix, Adam moments, step, RNG state, loss log and the
//                         settings it was made with; written atomically. A rerun with the same output
//                         and settings resumes from it (other settings: an Error); removed when done.
//   OUT.loss.csv          loss per optimizer step (total and last layer); exp/intactkv_figures.h
//                         draws it as OUT.loss.png/.svg.
//   OUT.targets.f16       the FP targets while running, when they exceed the memory budget.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "intactkv/prefix.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace ikv::intactkv {

struct CalibrationSpec {
  // The quantized model is the caller's (any quantizer); these describe it for the settings and the
  // checkpoint key. The prefix is never KV-quantized (calibrated for quantize_prefix = false).
  std::string quant_label;           // e.g. "RTN W3g128"
  int kv_bits = 16;                  // KV-cache bits of the new tokens (16 = off)
  std::string prefix = "vicuna";     // bos | vicuna | prompt:TEXT | FILE.ikv.safetensors (start point)
  // Data.
  std::string data = "sharegpt";     // sharegpt | FILE.json (ShareGPT) | FILE (plain text)
  int64_t samples = 128, heldout = 16, max_len = 1024, min_loss_tokens = 50;
  // Optimizer.
  int64_t epochs = 20, grad_accum = 16;
  double lr = 2e-4, warmup = 0.03, clip = 0.3, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  uint64_t seed = 0;                 // data selection and per-epoch sample order
  // Output.
  std::string output;                // the calibrated *.ikv.safetensors
  int64_t target_budget_bytes = int64_t(4) << 30;  // fp16 targets above this go to OUT.targets.f16
  bool progress = true;              // progress bars on stderr (when it is a terminal)
};

// Checks a spec before any work (counts, rates, output path): a one-line Error.
void validate_calibration_spec(const CalibrationSpec& spec);

struct StepLog {
  int64_t step = 0, epoch = 0;  // 1-based optimizer step; 0-based epoch
  double lr = 0, loss = 0, loss_last_layer = 0, grad_norm = 0;  // loss: mean over the step's samples
};
struct EpochLog {
  int64_t epoch = 0, epochs = 0, step = 0;  // epoch: 1-based, finished; step: optimizer steps so far
  double loss = 0, loss_last_layer = 0;     // mean over the epoch's samples (during the epoch)
  double heldout_mse = 0;                   // the loss on the held-out samples after it (NaN: none)
  double seconds = 0;                       // this epoch's time, held-out evaluation included
};

struct CalibrationResult {
  bool completed = false;                 // false when a hook stopped the run (checkpoint kept)
  Prefix prefix;                          // the calibrated prefix (origin "calibrated"), as written
  double first_loss = 0, final_loss = 0;  // mean training loss of the first step / last epoch
  double heldout_mse_before = 0, heldout_mse_after = 0;  // the loss on held-out samples, FP vs calibrated prefix
  int64_t steps = 0, resumed_from_epoch = 0;
  std::vector<StepLog> log;
  double seconds = 0, targets_seconds = 0;
  std::string output, log_csv;  // the prefix file; OUT.loss.csv, the loss per step
};

struct CalibrationHooks {
  std::function<void(const StepLog&)> on_step;
  // Called after each epoch's checkpoint is written; returning false stops there, as an
  // interruption would (the next run with the same output resumes).
  std::function<bool(const EpochLog&)> on_epoch;
};

// fp: the full-precision model (builds the prefix and the targets); quantized: the model the prefix
// is calibrated for (its linears are dequantized once for the backward). Both must be the same
// architecture; tok is the model's tokenizer. Writes spec.output (and the files listed above).
CalibrationResult calibrate_prefix(const model::Weights& fp, const model::Weights& quantized,
                                   const model::Tokenizer& tok, const std::string& data_root,
                                   const CalibrationSpec& spec, const CalibrationHooks& hooks = {});

// OUT for an output path (strips .ikv.safetensors or .safetensors).
std::string calibration_stem(const std::string& output);

}  // namespace ikv::intactkv
