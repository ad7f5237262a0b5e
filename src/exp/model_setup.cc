#include "exp/model_setup.h"

#include <omp.h>

#include <filesystem>

#include "exp/config.h"
#include "io/data_root.h"
#include "io/error.h"

namespace fs = std::filesystem;

namespace ikv::exp {

std::string resolve_model_path(const std::string& data_root, const std::string& model_arg) {
  std::error_code ec;
  if (!fs::exists(model_arg, ec) && !data_root.empty() && model_arg.find('/') == std::string::npos &&
      fs::exists(fs::path(data_root) / "models" / model_arg, ec))
    return (fs::path(data_root) / "models" / model_arg).string();
  return io::data_file(data_root, model_arg);
}

namespace {

// One-line error for anything but kDtypes.
void check_dtype(const std::string& dtype) {
  if (!is_dtype(dtype)) fail("dtype '", dtype, "' is not supported (fp32, bf16, q8)");
}

}  // namespace

void apply_dtype(model::Weights& w, const std::string& dtype) {
  check_dtype(dtype);
  if (dtype == "bf16") model::convert_linears_to_bf16(w);
  if (dtype == "q8") model::use_q8_inputs(w);
}

void check_tokenizer_fits(const model::Tokenizer& tok, int64_t model_vocab) {
  // A model may pad its embedding beyond the tokenizer's ids (Qwen: 151936 rows, 151669 ids).
  if (tok.vocab_size() > model_vocab)
    fail(tok.path(), ": tokenizer has ", tok.vocab_size(), " ids, more than the model's vocabulary of ", model_vocab);
}

std::unique_ptr<model::Tokenizer> load_tokenizer_verified(const std::string& data_root, const std::string& model_arg) {
  const std::string path = model::tokenizer_path_for(resolve_model_path(data_root, model_arg));
  io::verify_data_file(data_root, path);
  return model::load_tokenizer(path);
}

LoadedModel load_model_verified(const std::string& data_root, const std::string& model_arg,
                                const std::string& dtype) {
  check_dtype(dtype);
  const std::string path = resolve_model_path(data_root, model_arg);
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file()) io::verify_data_file(data_root, entry.path().string());
  } else {
    io::verify_data_file(data_root, path);
  }
  LoadedModel m;
  m.weights = model::load_model(path);
  m.tokenizer = model::open_tokenizer(path);
  check_tokenizer_fits(*m.tokenizer, m.weights.config.vocab);
  apply_dtype(m.weights, dtype);
  return m;
}

std::string resolve_text_dataset(const std::string& data_root, const std::string& name) {
  std::string rel = name;
  if (name == "wikitext2") rel = "datasets/wikitext-2-raw/wiki.test.raw";
  else if (name == "ptb") rel = "datasets/ptb/ptb.test.txt";
  else if (name == "c4")
    fail("c4: no copy of C4 ships with the data root; pass the path of a C4 validation shard as a text file");
  const std::string path = io::data_file(data_root, rel);
  io::verify_data_file(data_root, path);
  return path;
}

void set_threads(int threads) {
  if (threads < 0) fail("--threads ", threads, " must be >= 0");
  if (threads > 0) omp_set_num_threads(threads);
}

}  // namespace ikv::exp
