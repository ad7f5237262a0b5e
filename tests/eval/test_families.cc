// The later families end to end against transformers: the perplexity stream (tokenizer.json, BOS
// or none), the forward and the scoring give exp(mean of the golden per-token NLL); IntactKV
// prefixes in each family's chat format.
#include <cmath>
#include <cstring>

#include "eval/perplexity.h"
#include "intactkv/prefix.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "model/tokenizer.h"
#include "test_util.h"

using namespace ikv;

namespace {

struct Family {
  const char* model;
  intactkv::ChatFormat format;
};
const Family kFamilies[] = {{"tiny-llama3", intactkv::ChatFormat::Llama3},
                            {"tiny-mistral", intactkv::ChatFormat::Mistral},
                            {"tiny-qwen2", intactkv::ChatFormat::ChatML},
                            {"tiny-qwen3", intactkv::ChatFormat::ChatML}};

}  // namespace

TEST_CASE("perplexity on the tiny families equals transformers' NLL (BOS streams and Qwen's none)") {
  const std::string root = test::data_root();
  if (root.empty()) return;
  const std::string text = io::read_text_file(root + "/datasets/wikitext-2-raw/wiki.test.raw");
  for (const Family& f : kFamilies) {
    const std::string name = f.model;
    CAPTURE(name);
    model::Weights w = model::load_model(test::model_dir(f.model));
    const auto tok = model::open_tokenizer(test::model_dir(f.model));
    io::SafetensorsFile golden(root + "/golden/" + std::string(f.model) + "-golden.safetensors");
    const auto& ids_view = golden.get("input_ids");
    std::vector<int64_t> ids(ids_view.numel());
    std::memcpy(ids.data(), ids_view.data, ids_view.nbytes);
    const std::vector<float> nll = io::to_f32(golden.get("nll"), golden.path());
    const int64_t ctx = static_cast<int64_t>(ids.size());

    const std::vector<int32_t> stream = eval::perplexity_stream(*tok, text.substr(0, 4000), w.config.bos_id);
    REQUIRE(static_cast<int64_t>(stream.size()) >= ctx);
    for (int64_t i = 0; i < ctx; ++i) REQUIRE(stream[i] == ids[i]);
    CHECK(w.config.has_bos() == tok->has_bos());

    eval::PerplexityOptions opt;
    opt.ctx = ctx, opt.windows = 1, opt.progress = false;
    engine::Engine eng(w);
    const eval::PerplexityResult r = eval::perplexity(eng, stream, opt);
    // With <bos> the prediction right after it is not scored (targets 2..ctx-1); without,
    // every prediction in the window is (targets 1..ctx-1).
    const int64_t first = w.config.has_bos() ? 1 : 0;
    double sum = 0;
    for (int64_t i = first; i < ctx - 1; ++i) sum += nll[i];
    CHECK(r.tokens_scored == ctx - 1 - first);
    const double expected = std::exp(sum / static_cast<double>(ctx - 1 - first));
    MESSAGE(name << ": ppl " << r.ppl << ", transformers " << expected);
    // Per-token NLL agrees to ~1e-5 (test_golden); the mean of 62 of them to the same.
    CHECK(std::fabs(std::log(r.ppl) - std::log(expected)) < 2e-5);
  }
}

TEST_CASE("IntactKV prefixes in each family's chat format; no IntactKV_[B] without a BOS") {
  const std::string root = test::data_root();
  if (root.empty()) return;
  for (const Family& f : kFamilies) {
    const std::string name = f.model;
    CAPTURE(name);
    const auto tok = model::open_tokenizer(test::model_dir(f.model));
    const model::Config c = model::probe_model(test::model_dir(f.model)).config;
    CHECK(intactkv::chat_format(*tok) == f.format);
    // The system turn tokenizes as the start of a rendered conversation does: the prefix is
    // exactly the first tokens of the whole conversation's encoding.
    const std::vector<int32_t> pre = intactkv::prefix_tokens("system", *tok, c.bos_id);
    const std::string user =
        f.format == intactkv::ChatFormat::ChatML   ? "<|im_start|>user\nHello there.<|im_end|>\n<|im_start|>assistant\n"
        : f.format == intactkv::ChatFormat::Llama3 ? "<|start_header_id|>user<|end_header_id|>\n\nHello there.<|eot_id|>"
                                                   : "Hello there. [/INST]";
    std::vector<int32_t> whole = c.bos_tokens();
    for (int32_t t : tok->encode(intactkv::system_turn(f.format, "You are a helpful assistant.") + user))
      whole.push_back(t);
    REQUIRE(whole.size() > pre.size());
    CHECK(std::equal(pre.begin(), pre.end(), whole.begin()));
    if (!c.has_bos()) {
      CHECK(pre.front() == tok->encode("<|im_start|>").front());
      CHECK_THROWS_WITH_AS(intactkv::prefix_tokens("bos", *tok, c.bos_id), doctest::Contains("has no <bos> token"),
                           Error);
    } else {
      CHECK(pre.front() == c.bos_id);
    }
  }
}
