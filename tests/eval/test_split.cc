// Evaluations cut into item ranges (what the distributed runner does with large cells) give the
// whole evaluation's numbers bit for bit: perplexity over window ranges, tasks over documents.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "eval/perplexity.h"
#include "eval/tasks.h"
#include "io/mapped_file.h"
#include "model/tokenizer.h"
#include "model/weights.h"
#include "test_util.h"

using namespace ikv;
using namespace ikv::eval;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Loglikelihoods that depend on the request alone.
std::vector<LoglikResult> fake_loglik(const std::vector<LoglikRequest>& reqs) {
  std::vector<LoglikResult> out;
  for (const LoglikRequest& r : reqs) {
    const size_t h = std::hash<std::string>{}(r.context + "|" + r.continuation);
    out.push_back({-0.1 * static_cast<double>(h % 997) - 1e-3 * static_cast<double>(h % 13), h % 3 == 0, 1});
  }
  return out;
}

std::vector<TaskDoc> fake_docs(size_t n, bool by_subject) {
  const char* subjects[] = {"anatomy", "astronomy", "college_physics"};
  std::vector<TaskDoc> docs;
  for (size_t i = 0; i < n; ++i) {
    TaskDoc d;
    for (const char* letter : {" A", " B", " C", " D"})
      d.options.push_back({"Question " + std::to_string(i) + "\nAnswer:", letter});
    d.gold = static_cast<int>(i % 4);
    if (by_subject) d.subject = subjects[i * 3 / n];
    docs.push_back(d);
  }
  return docs;
}

}  // namespace

TEST_CASE("perplexity over window ranges joins to the whole run, bit for bit") {
  if (test::data_root().empty()) return;
  model::Weights w = model::load_model(test::model_dir("stories260K"));
  const auto tokenizer = model::open_tokenizer(test::model_dir("stories260K"));
  const model::Tokenizer& tok = *tokenizer;
  engine::Engine eng(w);
  const auto stream = perplexity_stream(tok, io::read_text_file(test::data_root() + "/README-sample.txt"), 1);
  PerplexityOptions opt;
  opt.ctx = 64;
  opt.windows = 7;
  opt.progress = false;
  CHECK(perplexity_window_count(static_cast<int64_t>(stream.size()), opt) == 7);
  const PerplexityResult whole = perplexity(eng, stream, opt);
  REQUIRE(whole.windows == 7);
  std::vector<PerplexityResult> parts;
  for (auto [b, e] : {std::pair{0, 3}, {3, 4}, {4, 7}}) {
    PerplexityOptions o = opt;
    o.first_window = b;
    o.windows = e;
    parts.push_back(perplexity(eng, stream, o));
    CHECK(parts.back().windows == e - b);
  }
  const PerplexityResult joined = join_perplexity(parts);
  CHECK(joined.windows == whole.windows);
  CHECK(joined.tokens_scored == whole.tokens_scored);
  CHECK(same_bits(joined.nll_sum, whole.nll_sum));
  CHECK(same_bits(joined.ppl, whole.ppl));
  REQUIRE(joined.window_nll.size() == whole.window_nll.size());
  for (size_t i = 0; i < whole.window_nll.size(); ++i) CHECK(same_bits(joined.window_nll[i], whole.window_nll[i]));

  PerplexityOptions bad = opt;
  bad.first_window = 8;
  CHECK_THROWS(perplexity(eng, stream, bad));
  bad.ctx = 1 << 20;
  CHECK_THROWS(perplexity_window_count(static_cast<int64_t>(stream.size()), bad));
}

TEST_CASE("tasks scored in document ranges give score_docs' metrics, MMLU groups included") {
  for (const char* name : {"mmlu", "arc_easy", "lambada_openai"}) {
    CAPTURE(name);
    const TaskSpec& spec = find_task(name);
    std::vector<TaskDoc> docs = fake_docs(23, spec.by_subject);
    if (spec.output == OutputType::kLoglikelihood)
      for (TaskDoc& d : docs) d.options.resize(1), d.gold = 0;
    const TaskResult whole = score_docs(spec, docs, fake_loglik, 5);
    TaskResult joined;
    std::vector<std::string> subjects;
    for (auto [b, e] : {std::pair{0, 4}, {4, 4}, {4, 17}, {17, 23}}) {
      const std::vector<TaskDoc> mine(docs.begin() + b, docs.begin() + e);
      const TaskResult part = score_items(spec, mine, fake_loglik, 5);
      CHECK(part.metrics.empty());
      joined.per_item_acc.insert(joined.per_item_acc.end(), part.per_item_acc.begin(), part.per_item_acc.end());
      joined.per_item_acc_norm.insert(joined.per_item_acc_norm.end(), part.per_item_acc_norm.begin(),
                                      part.per_item_acc_norm.end());
      joined.per_item_logprob.insert(joined.per_item_logprob.end(), part.per_item_logprob.begin(),
                                     part.per_item_logprob.end());
      for (const TaskDoc& d : mine) subjects.push_back(d.subject);
    }
    if (!spec.by_subject) subjects.clear();
    add_task_metrics(spec, subjects, joined);
    REQUIRE(joined.metrics.size() == whole.metrics.size());
    for (size_t i = 0; i < whole.metrics.size(); ++i) {
      CAPTURE(whole.metrics[i].name);
      CHECK(joined.metrics[i].name == whole.metrics[i].name);
      CHECK(same_bits(joined.metrics[i].value, whole.metrics[i].value));
      CHECK(same_bits(joined.metrics[i].stderr_, whole.metrics[i].stderr_));
      CHECK(joined.metrics[i].n == whole.metrics[i].n);
    }
    if (spec.by_subject) {
      CHECK(whole.metric("acc/anatomy").n > 0);
      CHECK_THROWS(add_task_metrics(spec, {"anatomy"}, joined));  // one subject for 23 documents
    }
  }
}
