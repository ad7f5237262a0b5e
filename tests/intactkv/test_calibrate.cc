// IntactKV calibration: the Vicuna template and its assistant mask, calibration data, and the
// AdamW loop (it lowers the loss; an interrupted run resumes to the bit-identical prefix).
#include <omp.h>
#include <unistd.h>

#include <filesystem>

#include "exp/variant.h"
#include "intactkv/calibrate.h"
#include "intactkv/calibrate_data.h"
#include "intactkv/chat_template.h"
#include "intactkv/prefix_file.h"
#include "intactkv/prefix_spec.h"
#include "io/error.h"
#include "test_util.h"

using namespace ikv;
namespace fs = std::filesystem;

namespace {

// Toy-sized problems run on one thread: OpenMP's fork/join (inside oneDNN too) costs more than the
// work there, and when other processes hold the cores, spin-waiting threads make it ~100x slower.
struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

const intactkv::Conversation kTwoTurns = {{"human", "Hi there"},
                                          {"gpt", "Hello! How can I help?"},
                                          {"human", "Tell me a joke."},
                                          {"gpt", "Why did the chicken cross the road?"}};

// Runs of consecutive masked tokens.
std::vector<std::vector<int32_t>> masked_runs(const intactkv::TokenizedChat& c) {
  std::vector<std::vector<int32_t>> runs;
  for (size_t i = 0; i < c.tokens.size(); ++i)
    if (c.assistant[i]) {
      if (i == 0 || !c.assistant[i - 1]) runs.emplace_back();
      runs.back().push_back(c.tokens[i]);
    }
  return runs;
}

}  // namespace

TEST_CASE("Vicuna v1.1 template: rendered string of a 2-turn conversation") {
  CHECK(intactkv::render_vicuna(kTwoTurns, intactkv::kVicunaSystemPrompt) ==
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: Hi there ASSISTANT: Hello! How can I "
        "help?</s>USER: Tell me a joke. ASSISTANT: Why did the chicken cross the road?</s>");
  // Turn selection: skip to the first human turn, stop where the alternation breaks, drop an
  // unanswered last question.
  intactkv::Conversation raw = {{"gpt", "(a reply to nothing)"}, {"human", "a"}, {"gpt", "b"}, {"human", "c"},
                                {"gpt", "d"}, {"human", "e"}};
  CHECK(intactkv::vicuna_turns(raw) == intactkv::Conversation(raw.begin() + 1, raw.begin() + 5));
  raw = {{"human", "a"}, {"gpt", "b"}, {"human", "c"}, {"human", "c2"}, {"gpt", "d"}};
  CHECK(intactkv::vicuna_turns(raw).size() == 2);
  raw = {{"human", "a"}, {"gpt", ""}, {"human", "c"}, {"gpt", "d"}};
  CHECK(intactkv::vicuna_turns(raw).empty());
}

TEST_CASE("Vicuna v1.1 template: tokens and assistant mask of a 2-turn conversation") {
  if (test::data_root().empty()) return;
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  const intactkv::TokenizedChat c = intactkv::tokenize_vicuna(kTwoTurns, intactkv::kVicunaSystemPrompt, tok, 1, 2);
  REQUIRE(c.tokens.size() == c.assistant.size());
  // <bos> + system prompt: exactly the `vicuna` IntactKV prefix, none of it masked.
  const std::vector<int32_t> vicuna = intactkv::prefix_tokens("vicuna", tok, 1);
  REQUIRE(c.system_end == static_cast<int64_t>(vicuna.size()));
  CHECK(std::vector<int32_t>(c.tokens.begin(), c.tokens.begin() + c.system_end) == vicuna);
  // The masked tokens are exactly the two replies, each followed by </s> (eos id 2).
  const auto runs = masked_runs(c);
  REQUIRE(runs.size() == 2);
  const char* replies[] = {"Hello! How can I help?", "Why did the chicken cross the road?"};
  for (int i = 0; i < 2; ++i) {
    CHECK(runs[i].back() == 2);
    CHECK(tok.decode(std::vector<int32_t>(runs[i].begin(), runs[i].end() - 1)) == replies[i]);
  }
  // The unmasked tokens after the system prompt are the two user pieces.
  std::vector<int32_t> user;
  std::vector<std::string> pieces;
  for (size_t i = c.system_end; i <= c.tokens.size(); ++i) {
    if (i < c.tokens.size() && !c.assistant[i]) {
      user.push_back(c.tokens[i]);
    } else if (!user.empty()) {
      pieces.push_back(tok.decode(user));
      user.clear();
    }
  }
  CHECK(pieces == std::vector<std::string>{"USER: Hi there ASSISTANT:", "USER: Tell me a joke. ASSISTANT:"});
  // Piecewise tokenization equals tokenizing the whole string where no "</s>" intervenes.
  const std::vector<int32_t> whole = tok.encode(std::string(intactkv::kVicunaSystemPrompt) +
                                                " USER: Hi there ASSISTANT: Hello! How can I help?");
  CHECK(std::vector<int32_t>(c.tokens.begin() + 1, c.tokens.begin() + 1 + whole.size()) == whole);
}

TEST_CASE("calibration data from ShareGPT: prefix first, assistant-token loss rows, held-out after") {
  if (test::data_root().empty()) return;
  const auto tokenizer = model::open_tokenizer(test::model_dir("testbed-26M"));
  const model::Tokenizer& tok = *tokenizer;
  const std::string path = intactkv::resolve_calibration_data(test::data_root(), "sharegpt");
  intactkv::CalibrationDataOptions opt;
  opt.samples = 4, opt.heldout = 2, opt.max_len = 256;
  for (const char* spec : {"vicuna", "bos", "prompt:You are a pirate."}) {
    CAPTURE(spec);
    const std::vector<int32_t> pre = intactkv::prefix_tokens(spec, tok, 1);
    const intactkv::CalibrationData d = intactkv::load_calibration_data(path, tok, pre, 2, opt);
    CHECK(d.chat);
    REQUIRE(d.train.size() == 4);
    REQUIRE(d.heldout.size() == 2);
    for (const auto* set : {&d.train, &d.heldout})
      for (const intactkv::CalibrationSample& s : *set) {
        CHECK(std::equal(pre.begin(), pre.end(), s.tokens.begin()));
        CHECK(static_cast<int64_t>(s.tokens.size()) <= 256);
        CHECK(static_cast<int64_t>(s.loss_rows.size()) > opt.min_loss_tokens);
        CHECK(s.loss_rows.back() < static_cast<int64_t>(s.tokens.size() - pre.size()));
      }
  }
  // Asking for more than the file has is a one-line error.
  opt.samples = 5000;
  CHECK_THROWS_WITH_AS(intactkv::load_calibration_data(path, tok, {1}, 2, opt), doctest::Contains("are needed"), Error);
}

namespace {

struct Tiny {
  model::Weights fp, q;
  std::unique_ptr<model::Tokenizer> tok;
};

Tiny stories_w3() {
  Tiny t;
  t.fp = model::load_model(test::model_dir("stories260K"));
  t.tok = model::open_tokenizer(test::model_dir("stories260K"));
  t.q = t.fp;
  exp::quantize_weights(t.q, exp::rtn_spec(3, -1));
  return t;
}

intactkv::CalibrationSpec small_spec(const std::string& out) {
  intactkv::CalibrationSpec s;
  s.quant_label = "RTN W3";
  s.prefix = "prompt:Once upon a time";
  s.data = test::data_root() + "/README-sample.txt";  // plain text: loss on every token
  s.samples = 4, s.heldout = 2, s.max_len = 40;
  s.epochs = 4, s.grad_accum = 2, s.lr = 3e-2, s.warmup = 0.1;
  s.output = out;
  s.progress = false;
  return s;
}

std::string temp_out(const char* name) {
  // Per process: other builds of this suite may run at the same time.
  const fs::path dir = fs::temp_directory_path() / ("ikv-test-calibrate-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / name).string();
  for (const char* ext : {".ikv.safetensors", ".ckpt.safetensors", ".loss.png", ".loss.svg", ".loss.csv"})
    fs::remove(intactkv::calibration_stem(out) + ext);
  return out;
}

}  // namespace

TEST_CASE("AdamW on the prefix lowers the calibration loss (stories260K, RTN W3)") {
  const OneThread one_thread;
  if (test::data_root().empty()) return;
  Tiny t = stories_w3();
  const std::string out = temp_out("lower.ikv.safetensors");
  std::vector<double> epoch_loss;
  intactkv::CalibrationHooks hooks;
  hooks.on_epoch = [&](const intactkv::EpochLog& e) {
    epoch_loss.push_back(e.loss);
    return true;
  };
  intactkv::CalibrationResult r =
      intactkv::calibrate_prefix(t.fp, t.q, *t.tok, test::data_root(), small_spec(out), hooks);
  REQUIRE(r.completed);
  CHECK(r.steps == 8);
  REQUIRE(epoch_loss.size() == 4);
  MESSAGE("epoch losses " << epoch_loss[0] << " " << epoch_loss[1] << " " << epoch_loss[2] << " " << epoch_loss[3]
                          << "; held-out " << r.heldout_mse_before << " -> " << r.heldout_mse_after);
  for (size_t e = 1; e < epoch_loss.size(); ++e) CHECK(epoch_loss[e] < epoch_loss[e - 1]);
  CHECK(epoch_loss.back() < 0.95 * epoch_loss.front());
  CHECK(r.heldout_mse_after < r.heldout_mse_before);
  // The file is an IntactKV like any other, marked calibrated, with its settings and results.
  intactkv::Prefix p = intactkv::load_prefix(out, t.fp.config, t.fp.fingerprint);
  CHECK(p.origin == "calibrated");
  CHECK(p.key == r.prefix.key);
  CHECK(p.settings.at("calibrated_for") == "RTN W3");
  CHECK(p.settings.count("heldout_mse_after") == 1);
  // The loss log is data; the figure is drawn by exp (tests/cli/calibrate.sh checks the PNG/SVG).
  CHECK(fs::exists(intactkv::calibration_stem(out) + ".loss.csv"));
  CHECK_FALSE(fs::exists(intactkv::calibration_stem(out) + ".loss.png"));
  CHECK_FALSE(fs::exists(intactkv::calibration_stem(out) + ".ckpt.safetensors"));
  fs::remove_all(fs::path(out).parent_path());
}

TEST_CASE("an interrupted calibration resumes to the bit-identical prefix") {
  if (test::data_root().empty()) return;
  Tiny t = stories_w3();
  const std::string a_out = temp_out("straight.ikv.safetensors"), b_out = temp_out("resumed.ikv.safetensors");
  intactkv::CalibrationResult a = intactkv::calibrate_prefix(t.fp, t.q, *t.tok, test::data_root(), small_spec(a_out));
  REQUIRE(a.completed);

  // Stop after epoch 2 as a crash would (the targets spill to a file this time: budget 0).
  intactkv::CalibrationSpec spec = small_spec(b_out);
  spec.target_budget_bytes = 0;
  intactkv::CalibrationHooks stop;
  stop.on_epoch = [](const intactkv::EpochLog& e) { return e.epoch < 2; };
  intactkv::CalibrationResult b1 = intactkv::calibrate_prefix(t.fp, t.q, *t.tok, test::data_root(), spec, stop);
  CHECK_FALSE(b1.completed);
  CHECK(b1.steps == 4);
  const std::string ckpt = intactkv::calibration_stem(b_out) + ".ckpt.safetensors";
  CHECK(fs::exists(ckpt));
  CHECK_FALSE(fs::exists(b_out));
  CHECK_FALSE(fs::exists(intactkv::calibration_stem(b_out) + ".targets.f16"));

  // A checkpoint belongs to its settings: another learning rate is refused.
  intactkv::CalibrationSpec other = spec;
  other.lr = 1e-3;
  CHECK_THROWS_WITH_AS(intactkv::calibrate_prefix(t.fp, t.q, *t.tok, test::data_root(), other),
                       doctest::Contains("other settings"), Error);

  intactkv::CalibrationResult b2 = intactkv::calibrate_prefix(t.fp, t.q, *t.tok, test::data_root(), spec);
  REQUIRE(b2.completed);
  CHECK(b2.resumed_from_epoch == 2);
  CHECK(b2.steps == a.steps);
  CHECK(b2.prefix.key == a.prefix.key);  // bitwise equal floats
  CHECK(b2.prefix.value == a.prefix.value);
  REQUIRE(b2.log.size() == a.log.size());
  for (size_t i = 0; i < a.log.size(); ++i) CHECK(b2.log[i].loss == a.log[i].loss);
  CHECK(b2.heldout_mse_after == a.heldout_mse_after);
  CHECK_FALSE(fs::exists(ckpt));
  fs::remove_all(fs::path(a_out).parent_path());
}

TEST_CASE("impossible calibration settings are one-line errors before any work") {
  intactkv::CalibrationSpec s;
  s.output = (fs::temp_directory_path() / "x.ikv.safetensors").string();
  CHECK_NOTHROW(intactkv::validate_calibration_spec(s));
  auto bad = [&](auto change, const char* what) {
    intactkv::CalibrationSpec b = s;
    change(b);
    CHECK_THROWS_WITH_AS(intactkv::validate_calibration_spec(b), doctest::Contains(what), Error);
  };
  bad([](auto& b) { b.samples = 0; }, "--samples");
  bad([](auto& b) { b.lr = 0; }, "--lr");
  bad([](auto& b) { b.lr = -1e-4; }, "--lr");
  bad([](auto& b) { b.epochs = 0; }, "--epochs");
  bad([](auto& b) { b.grad_accum = 0; }, "--grad-accum");
  bad([](auto& b) { b.warmup = 1.5; }, "--warmup");
  bad([](auto& b) { b.kv_bits = 1; }, "--kv-bits");
  bad([](auto& b) { b.output = "/nonexistent-dir/x.ikv.safetensors"; }, "does not exist");
  bad([](auto& b) { b.output = ""; }, "output");
  bad([](auto& b) { b.prefix = "bogus"; }, "--prefix");
}
