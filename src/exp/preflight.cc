#include "exp/preflight.h"

#include <filesystem>
#include <map>
#include <set>

#include "exp/model_setup.h"
#include "intactkv/prefix_file.h"
#include "io/data_root.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace ikv::exp {
namespace {

// A dataset given by name or path: it must resolve (and match SHA256SUMS) and hold some text.
void check_text_dataset(const std::string& data_root, const std::string& name) {
  const std::string path = resolve_text_dataset(data_root, name);
  io::check_regular_file(path, "dataset");
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) == 0) fail(path, ": dataset is empty");
}

}  // namespace

void preflight(const Plan& plan, const std::string& data_root) {
  std::map<std::string, model::ModelProbe> models;  // by ModelSpec::path
  for (const ModelSpec& m : plan.config.models) {
    if (models.count(m.path)) continue;
    const std::string path = resolve_model_path(data_root, model_dir(m, data_root));
    model::ModelProbe probe = model::probe_model(path);
    check_tokenizer_fits(*model::open_tokenizer(path), probe.config.vocab);
    models.emplace(m.path, std::move(probe));
  }
  std::set<std::string> checked;  // datasets and IntactKV files already looked at, per model
  for (const Cell& cell : plan.cells) {
    const model::ModelProbe& probe = models.at(cell.model.path);
    const int64_t max_pos = probe.config.max_pos;
    const std::string who = cell.model.where + ": " + cell.model.name;
    if (const auto* u = std::get_if<PplUnit>(&cell.task)) {
      if (u->ctx > max_pos)
        fail(who, ": ppl ctx ", u->ctx, " exceeds the model's max_position_embeddings ", max_pos);
      if (checked.insert("data|" + u->dataset).second) check_text_dataset(data_root, u->dataset);
    }
    if (const auto* k = std::get_if<KldTask>(&cell.task)) {
      if (k->ctx > max_pos)
        fail(who, ": kld ctx ", k->ctx, " exceeds the model's max_position_embeddings ", max_pos);
      if (checked.insert("data|" + k->dataset).second) check_text_dataset(data_root, k->dataset);
    }
    if (const auto* q = std::get_if<QuantErrorTask>(&cell.task))
      if (checked.insert("data|" + q->heldout).second) check_text_dataset(data_root, q->heldout);
    if (const auto* s = std::get_if<MseSweepTask>(&cell.task))
      if (s->data != "sharegpt" && checked.insert("data|" + s->data).second) check_text_dataset(data_root, s->data);
    if (cell.quant.reads_calibration_data() && cell.quant.data != "sharegpt" &&
        checked.insert("data|" + cell.quant.data).second)
      check_text_dataset(data_root, cell.quant.data);
    const bool bos_prefix = cell.intactkv.kind == IntactKVSpec::Kind::Bos ||
                            (cell.intactkv.kind == IntactKVSpec::Kind::Calibrated && cell.intactkv.calibration.prefix == "bos");
    if (bos_prefix && !probe.config.has_bos())
      fail(who, ": IntactKV bos: this model has no <bos> token (its tokenizer adds none); use {preset: system} (its chat "
                "system prompt) or {prompt: TEXT}");
    if (cell.intactkv.kind == IntactKVSpec::Kind::File &&
        checked.insert("ikv|" + cell.model.path + "|" + cell.intactkv.value).second) {
      // Resolved as the executor resolves it (relative to the data root); a FIFO or device is
      // refused by the memory map before it is opened.
      intactkv::load_prefix(io::data_file(data_root, cell.intactkv.value), probe.config, probe.fingerprint);
    }
  }
}

}  // namespace ikv::exp
