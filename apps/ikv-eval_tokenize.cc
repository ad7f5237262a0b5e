// ikv-eval tokenize: a model's tokenizer on a text, as ids and pieces (no <bos> added).
#include <nlohmann/json.hpp>

#include "exp/model_setup.h"
#include "ikv-eval_commands.h"
#include "io/data_root.h"
#include "io/mapped_file.h"

namespace ikv::cli {
namespace {

struct TokenizeArgs {
  std::string model, text_file, prompt;
  bool ids = false, pieces = false;
};

void run_tokenize(const Common& common, const TokenizeArgs& a) {
  if (a.text_file.empty() == a.prompt.empty()) fail("tokenize: give exactly one of -f FILE or -p TEXT");
  const std::string root = io::find_data_root(common.data_root);
  const auto tok = exp::load_tokenizer_verified(root, a.model);
  const std::string text = a.prompt.empty() ? io::read_utf8_text(io::data_file(root, a.text_file)) : a.prompt;
  const std::vector<int32_t> ids = tok->encode(text);
  if (common.json) {
    std::vector<std::string> pieces;
    for (int32_t id : ids) pieces.push_back(tok->piece(id));
    const nlohmann::json j = {{"tokenizer", tok->path()}, {"kind", tok->kind()}, {"bos_id", tok->bos_id()},
                              {"eos_id", tok->eos_id()}, {"tokens", ids.size()}, {"ids", ids}, {"pieces", pieces}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (a.ids) out += (i ? " " : "") + std::to_string(ids[i]);
    else if (a.pieces) out += tok->piece(ids[i]) + "\n";
    else out += std::to_string(ids[i]) + "\t" + tok->piece(ids[i]) + "\n";
  }
  if (a.ids) out += "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fprintf(stderr, "%zu tokens (%s: %s)\n", ids.size(), std::string(tok->kind()).c_str(), tok->path().c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app, Common& common) {
  static TokenizeArgs a;
  CLI::App* cmd = app.add_subcommand("tokenize", "a model's tokenizer on a text: ids and pieces, no <bos> added");
  add_common(cmd, common);
  cmd->add_option("-m,--model", a.model, "model folder (or data-root name) whose tokenizer to use")->required();
  cmd->add_option("-f,--file", a.text_file, "text file to tokenize");
  cmd->add_option("-p,--prompt", a.prompt, "text to tokenize");
  CLI::Option* ids = cmd->add_flag("--ids", a.ids, "print only the ids, on one line");
  cmd->add_flag("--pieces", a.pieces, "print only the pieces, one per line")->excludes(ids);
  cmd->callback([&common] { run_tokenize(common, a); });
}

}  // namespace ikv::cli
