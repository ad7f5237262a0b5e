// Turning a user's model argument into a ready engine: resolve it against the data root, verify
// its files' sha256 where the data root lists them, load, and choose the compute dtype.
#pragma once
#include <memory>
#include <string>

#include "model/tokenizer.h"
#include "model/weights.h"

namespace ikv::exp {

struct LoadedModel {
  model::Weights weights;
  std::unique_ptr<model::Tokenizer> tokenizer;
};

// model_arg: a folder or .bin path, absolute, relative to the working directory, or relative to
// the data root (e.g. "models/testbed-26M"); a bare name is looked up under models/.
std::string resolve_model_path(const std::string& data_root, const std::string& model_arg);
LoadedModel load_model_verified(const std::string& data_root, const std::string& model_arg,
                                const std::string& dtype = "fp32");
// The tokenizer alone (model::tokenizer_path_for), its file verified like the model's.
std::unique_ptr<model::Tokenizer> load_tokenizer_verified(const std::string& data_root, const std::string& model_arg);
// Every id of the tokenizer must be a row of the model's embedding (which may have more).
void check_tokenizer_fits(const model::Tokenizer& tok, int64_t model_vocab);
// Puts loaded (and, for packed inputs, already quantized) weights in `dtype`.
void apply_dtype(model::Weights& w, const std::string& dtype);
// Resolves a dataset name (wikitext2, ptb) or a file path; verifies it against SHA256SUMS.
std::string resolve_text_dataset(const std::string& data_root, const std::string& name);
// Sets the OpenMP thread count (0 = all cores) for our loops and oneDNN.
void set_threads(int threads);

}  // namespace ikv::exp
