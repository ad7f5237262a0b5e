// Task prompts against hand-written expectations (fixtures in data/fixtures/tasks, laid out like
// the bundle's datasets/ folder), the real datasets' first items and sizes, and the metrics of
// run_task with fake scorers whose answers are predictable by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "eval/tasks.h"
#include "io/error.h"
#include "test_util.h"

using namespace ikv;
using namespace ikv::eval;

namespace {

// A small data root shaped like the bundle (datasets/<same paths>), 2-3 hand-written items per file.
const std::string kFixtures = std::string(IKV_SOURCE_DIR) + "/data/fixtures/tasks";

std::vector<TaskDoc> fixture_docs(const std::string& task, TaskOptions o = {}) {
  o.data_root = kFixtures;
  return load_task_docs(find_task(task), o);
}

void check_mc(const TaskDoc& d, const std::string& context, const std::vector<std::string>& continuations,
              int gold) {
  REQUIRE(d.options.size() == continuations.size());
  for (size_t i = 0; i < continuations.size(); ++i) {
    CHECK(d.options[i].context == context);
    CHECK(d.options[i].continuation == continuations[i]);
  }
  CHECK(d.gold == gold);
}

// A scorer that looks each request up by its continuation (or, with by_context, its context) in
// a table; an unexpected request fails the test instead of scoring silently.
LoglikFn table_scorer(std::map<std::string, LoglikResult> table, bool by_context = false) {
  return [table = std::move(table), by_context](const std::vector<LoglikRequest>& reqs) {
    std::vector<LoglikResult> out;
    for (const LoglikRequest& r : reqs) {
      const std::string& key = by_context ? r.context : r.continuation;
      auto it = table.find(key);
      if (it == table.end()) throw std::runtime_error("fake scorer: unexpected request key \"" + key + "\"");
      out.push_back(it->second);
    }
    return out;
  };
}

std::string mmlu_shot(const std::string& q, const char* a, const char* b, const char* c, const char* d,
                      const char* answer) {
  return q + "\nA. " + a + "\nB. " + b + "\nC. " + c + "\nD. " + d + "\nAnswer: " + answer + "\n\n";
}

const std::string kAlgebraHeader =  // two spaces after "about", as the reference's format_subject
    "The following are multiple choice questions (with answers) about  abstract algebra.\n\n";
const std::string kAlgebraShots[3] = {
    mmlu_shot("Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.", "0", "1", "2", "3", "B"),
    mmlu_shot("Statement 1 | If aH is an element of a factor group, then |aH| divides |a|.", "True, True",
              "False, False", "True, False", "False, True", "B"),
    mmlu_shot("What is 2+2?", "3", "4", "5", "6", "B"),
};
const std::string kAlgebraTest1 =
    "Find the degree for the given field extension Q(sqrt(2), sqrt(3)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:";
const std::vector<std::string> kLetters = {" A", " B", " C", " D"};

}  // namespace

TEST_CASE("task registry: names, unknown name lists the valid ones") {
  std::vector<std::string> names;
  for (const TaskSpec& t : all_tasks()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"arc_easy", "arc_challenge", "boolq", "hellaswag", "lambada_openai",
                                          "mmlu", "openbookqa", "piqa", "winogrande"});
  try {
    find_task("arc-easy");
    FAIL("no error");
  } catch (const Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("arc-easy") != std::string::npos);
    CHECK(msg.find("arc_easy, arc_challenge") != std::string::npos);
  }
}

TEST_CASE("arc: Question/Answer prompt, letter and numeric labels, 3 choices") {
  auto docs = fixture_docs("arc_easy");
  REQUIRE(docs.size() == 3);
  check_mc(docs[0],
           "Question: Which piece of safety equipment is used to keep mold spores from entering the respiratory "
           "system?\nAnswer:",
           {" safety goggles", " breathing mask", " rubber gloves", " lead apron"}, 1);
  check_mc(docs[1], "Question: What is the nutrient source for some fungi?\nAnswer:",
           {" sunlight", " oxygen", " carbon dioxide", " dead organisms"}, 3);
  check_mc(docs[2], "Question: Which unit measures temperature?\nAnswer:", {" \u00b0C", " kg", " mm"}, 0);

  auto hard = fixture_docs("arc_challenge");
  REQUIRE(hard.size() == 2);
  check_mc(hard[0], "Question: Which process turns liquid water into vapor?\nAnswer:",
           {" freezing", " melting", " condensation", " deposition", " evaporation"}, 4);
  check_mc(hard[1], "Question: What do plants need for photosynthesis?\nAnswer:", {" light", " sand"}, 0);
}

TEST_CASE("boolq: SuperGLUE passage (title -- passage), question mark added, no/yes") {
  auto docs = fixture_docs("boolq");
  REQUIRE(docs.size() == 2);
  check_mc(docs[0],
           "Diffuse sky radiation -- Sunlight is scattered by the atmosphere, and blue light is scattered most.\n"
           "Question: is the sky blue on a clear day?\nAnswer:",
           {" no", " yes"}, 1);
  check_mc(docs[1],
           "Penguin -- Penguins live almost exclusively in the Southern Hemisphere.\n"
           "Question: do penguins live at the north pole?\nAnswer:",
           {" no", " yes"}, 0);
}

TEST_CASE("openbookqa: bare question stem, answerKey left-stripped") {
  auto docs = fixture_docs("openbookqa");
  REQUIRE(docs.size() == 2);
  check_mc(docs[0], "There is most likely going to be fog around:", {" a marsh", " a tundra", " the plains", " a desert"},
           0);
  check_mc(docs[1], "A magnet will stick to", {" wood", " an iron nail", " glass", " paper"}, 1);
}

TEST_CASE("winogrande: partial evaluation, contexts differ, one stripped continuation") {
  auto docs = fixture_docs("winogrande");
  REQUIRE(docs.size() == 2);
  const TaskDoc& d = docs[0];
  REQUIRE(d.options.size() == 2);
  CHECK(d.options[0].context == "Sarah was a much better surgeon than Maria so Sarah");
  CHECK(d.options[1].context == "Sarah was a much better surgeon than Maria so Maria");
  CHECK(d.options[0].continuation == " always got the easier cases.");
  CHECK(d.options[1].continuation == " always got the easier cases.");
  CHECK(d.gold == 1);
  // Spaces after the blank and at the end are stripped; one " " delimiter goes back in front.
  CHECK(docs[1].options[0].context == "The trophy didn't fit in the suitcase because the trophy");
  CHECK(docs[1].options[1].context == "The trophy didn't fit in the suitcase because the suitcase");
  CHECK(docs[1].options[0].continuation == " was too big.");
  CHECK(docs[1].gold == 0);
}

TEST_CASE("hellaswag: llama.cpp text format, context is line 1 verbatim") {
  auto docs = fixture_docs("hellaswag");
  REQUIRE(docs.size() == 2);
  // lm-eval's HF preprocessing would capitalize ctx_b ("... roof. He"); this file keeps "he".
  check_mc(docs[0], "Roof shingle removal: A man is sitting on a roof. he",
           {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.", " is holding a rubik's cube.",
            " starts pulling up roofing on a roof."},
           3);
  check_mc(docs[1], "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. the lady",
           {" swings and lands in her arms.", " pulls the barbell forward.", " pulls a rope attached to the barbell.",
            " stands and lifts the weight over her head."},
           3);
}

TEST_CASE("piqa: Question/Answer prompt, gold from the labels file, solutions verbatim") {
  auto docs = fixture_docs("piqa");
  REQUIRE(docs.size() == 2);
  check_mc(docs[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
           {" Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will "
            "also need to supply it with a water bottle and a food dish.",
            " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you "
            "will also need to supply it with a water bottle and a food dish."},
           0);
  check_mc(docs[1], "Question: dresser\nAnswer:",
           {" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "}, 1);
}

TEST_CASE("lambada_openai: split at the last space, the space belongs to the target") {
  auto docs = fixture_docs("lambada_openai");
  REQUIRE(docs.size() == 2);
  REQUIRE(docs[0].options.size() == 1);
  CHECK(docs[0].options[0].context ==
        "\"No need to change. We won't be that long.\"\n\nShane gripped her arm and started leading her to the");
  CHECK(docs[0].options[0].continuation == " dock");
  CHECK(docs[1].options[0].context == "She looked at the \u00e9clair and");
  CHECK(docs[1].options[0].continuation == " smiled");
}

TEST_CASE("mmlu: Hendrycks 5-shot prompt from the dev file, pandas cell semantics") {
  TaskOptions o;
  o.subjects = {"world_religions", "abstract_algebra"};  // run in table order regardless
  auto docs = fixture_docs("mmlu", o);
  REQUIRE(docs.size() == 4);
  // Only 3 dev rows exist, so "5-shot" uses all 3.
  check_mc(docs[0], kAlgebraHeader + kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraShots[2] + kAlgebraTest1,
           kLetters, 1);
  // Quoted multi-line cell with "" escapes; "None" is NaN to pandas and prints as "nan"; the
  // leading space of " a set" is kept.
  check_mc(docs[1],
           kAlgebraHeader + kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraShots[2] +
               "Which is a \"group\"?\n(a multi-line question)\nA. nan\nB. the integers under addition\nC.  a set\n"
               "D. the empty set\nAnswer:",
           kLetters, 1);
  CHECK(docs[0].subject == "abstract_algebra");
  const std::string religions =
      "The following are multiple choice questions (with answers) about  world religions.\n\n" +
      mmlu_shot("What is the sacred text of Islam?", "Quran", "Torah", "Vedas", "Tripitaka", "A") +
      mmlu_shot("Where was the Buddha born?", "Lumbini", "Rome", "Athens", "Cairo", "A");
  check_mc(docs[3], religions + "How many pillars of Islam are there?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", kLetters, 2);
  CHECK(docs[3].subject == "world_religions");

  o.limit = 1;  // the first question of every subject
  auto limited = fixture_docs("mmlu", o);
  REQUIRE(limited.size() == 2);
  CHECK(limited[0].options[0].context == docs[0].options[0].context);
  CHECK(limited[1].options[0].context == docs[2].options[0].context);

  o.num_fewshot = 1;
  o.limit = 0;
  CHECK(fixture_docs("mmlu", o)[0].options[0].context == kAlgebraHeader + kAlgebraShots[0] + kAlgebraTest1);
}

TEST_CASE("mmlu: drop the last shot while prompt tokens + <bos> exceed max_ctx") {
  TaskOptions o;
  o.subjects = {"abstract_algebra"};
  // Fake tokenizer: every "Answer:" costs 100 tokens, so k shots + the question = 100 (k + 1).
  int calls = 0;
  o.count_tokens = [&calls](const std::string& text) {
    ++calls;
    int64_t n = 0;
    for (size_t p = text.find("Answer:"); p != std::string::npos; p = text.find("Answer:", p + 1)) n += 100;
    return n;
  };
  o.max_ctx_tokens = 401;  // 3 shots: 400 + 1 <bos> = 401 fits
  CHECK(fixture_docs("mmlu", o)[0].options[0].context ==
        kAlgebraHeader + kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraShots[2] + kAlgebraTest1);
  o.max_ctx_tokens = 400;  // 401 > 400: drop the last shot
  CHECK(fixture_docs("mmlu", o)[0].options[0].context ==
        kAlgebraHeader + kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraTest1);
  o.max_ctx_tokens = 150;  // only 0 shots fit (101)
  CHECK(fixture_docs("mmlu", o)[0].options[0].context == kAlgebraHeader + kAlgebraTest1);
  o.max_ctx_tokens = 50;  // nothing fits: stop at 0 shots, the scorer truncates
  CHECK(fixture_docs("mmlu", o)[0].options[0].context == kAlgebraHeader + kAlgebraTest1);
  CHECK(calls > 0);

  o.count_tokens = nullptr;
  CHECK_THROWS_WITH_AS(fixture_docs("mmlu", o), doctest::Contains("count_tokens"), Error);
}

TEST_CASE("mmlu: lm-eval's prompt: one space after \"about\", question stripped, cells as written") {
  TaskOptions o;
  o.subjects = {"abstract_algebra"};
  o.mmlu_format = "lm-eval";
  auto docs = fixture_docs("mmlu", o);
  REQUIRE(docs.size() == 2);
  const std::string header = "The following are multiple choice questions (with answers) about abstract algebra.\n\n";
  const std::string shots = kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraShots[2];
  check_mc(docs[0], header + shots + kAlgebraTest1, kLetters, 1);
  // "None" stays "None" (no pandas NA); the question's own line break is inside, not stripped.
  check_mc(docs[1],
           header + shots +
               "Which is a \"group\"?\n(a multi-line question)\nA. None\nB. the integers under addition\nC.  a set\n"
               "D. the empty set\nAnswer:",
           kLetters, 1);
  o.mmlu_format = "latest";
  CHECK_THROWS_WITH_AS(fixture_docs("mmlu", o), doctest::Contains("format 'latest'"), Error);
}

TEST_CASE("mmlu: a 4096-context model drops shots at the reference's 2048 by default") {
  CHECK(mmlu_prompt_limit(2048, 4096) == 2048);  // the task setting caps a longer context
  CHECK(mmlu_prompt_limit(2048, 1024) == 1024);  // and the model's context caps the setting
  CHECK(mmlu_prompt_limit(0, 4096) == 0);        // 0: never drop
  TaskOptions o;
  o.subjects = {"abstract_algebra"};
  // Every "Answer:" costs 700 tokens: 3 shots + the question = 2800 (+1 <bos>).
  o.count_tokens = [](const std::string& text) {
    int64_t n = 0;
    for (size_t p = text.find("Answer:"); p != std::string::npos; p = text.find("Answer:", p + 1)) n += 700;
    return n;
  };
  o.max_ctx_tokens = mmlu_prompt_limit(2048, 4096);  // what the executor and `tasks` pass by default
  CHECK(fixture_docs("mmlu", o)[0].options[0].context == kAlgebraHeader + kAlgebraShots[0] + kAlgebraTest1);
  o.max_ctx_tokens = 4096;  // the model's context, as before the setting existed: all 3 shots
  CHECK(fixture_docs("mmlu", o)[0].options[0].context ==
        kAlgebraHeader + kAlgebraShots[0] + kAlgebraShots[1] + kAlgebraShots[2] + kAlgebraTest1);
}

TEST_CASE("hellaswag: the canonical jsonl, when present, is read with lm-eval's preprocessing") {
  const std::string root = std::string(IKV_SOURCE_DIR) + "/data/fixtures/tasks-canonical";
  CHECK(task_files(find_task("hellaswag"), root) == std::vector<std::string>{"datasets/hellaswag/hellaswag_val.jsonl"});
  CHECK(task_files(find_task("hellaswag"), kFixtures) ==
        std::vector<std::string>{"datasets/hellaswag/hellaswag_val_full.txt"});
  TaskOptions o;
  o.data_root = root;
  auto docs = load_task_docs(find_task("hellaswag"), o);
  REQUIRE(docs.size() == 2);
  // ctx_b.capitalize(): "he" -> "He" (the bundled conversion keeps "he").
  check_mc(docs[0], "Roof shingle removal: A man is sitting on a roof. He",
           {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.", " is holding a rubik's cube.",
            " starts pulling up roofing on a roof."},
           3);
  // " [title]" -> ". ", [bracketed] text removed, then "  " -> " " once; capitalize() lowers the
  // rest of ctx_b. An ending that starts with a tag keeps the space the tag left.
  check_mc(docs[1], "Home and Garden: How to clean a grill.. Heat the grill. Open the lid carefully",
           {"  Wipe the grates.", " Leave it alone.", " Call a friend twice.", " Walk away."}, 0);
  o.limit = 1;
  CHECK(load_task_docs(find_task("hellaswag"), o).size() == 1);
}

TEST_CASE("mmlu: unknown subject and missing files are clear errors") {
  TaskOptions o;
  o.subjects = {"astrology"};
  CHECK_THROWS_WITH_AS(fixture_docs("mmlu", o), doctest::Contains("unknown MMLU subject \"astrology\""), Error);
  o.subjects = {"anatomy"};  // a real subject with no fixture file
  CHECK_THROWS_WITH_AS(fixture_docs("mmlu", o), doctest::Contains("anatomy_dev.csv"), Error);
  CHECK(mmlu_subjects().size() == 57);
}

TEST_CASE("missing dataset names the path and the ikv-data bundle") {
  TaskOptions o;
  o.data_root = std::string(IKV_SOURCE_DIR) + "/data/fixtures/no-such-root";
  try {
    load_task_docs(find_task("piqa"), o);
    FAIL("no error");
  } catch (const Error& e) {
    std::string msg = e.what();
    CHECK(msg.find("datasets/piqa/valid.jsonl") != std::string::npos);
    CHECK(msg.find("IKV_DATA") != std::string::npos);
  }
}

TEST_CASE("limit keeps the first N documents") {
  TaskOptions o;
  o.limit = 2;
  auto docs = fixture_docs("arc_easy", o);
  REQUIRE(docs.size() == 2);
  CHECK(docs[1].gold == 3);
  o.limit = 1;
  CHECK(fixture_docs("hellaswag", o).size() == 1);
}

TEST_CASE("run_task multiple choice: acc vs acc_norm (characters of the choice, no delimiter)") {
  // acc picks the highest loglik; acc_norm divides by the choice's length in code points.
  // doc 1: both right. doc 2: acc picks " sunlight" (-4), acc_norm " dead organisms" (-5.6/14 =
  // -0.4). doc 3: " kg" wins both (-2.4/2 = -1.2 vs " °C" -3/2 = -1.5); a byte count (°C = 3 bytes,
  // -1.0) would wrongly pick the gold.
  LoglikFn fake = table_scorer({{" safety goggles", {-10, false, 1}},
                                {" breathing mask", {-9, false, 1}},
                                {" rubber gloves", {-20, false, 1}},
                                {" lead apron", {-30, false, 1}},
                                {" sunlight", {-4, false, 1}},
                                {" oxygen", {-5, false, 1}},
                                {" carbon dioxide", {-9, false, 1}},
                                {" dead organisms", {-5.6, false, 1}},
                                {" \u00b0C", {-3, false, 1}},
                                {" kg", {-2.4, false, 1}},
                                {" mm", {-5, false, 1}}});
  TaskOptions o;
  o.data_root = kFixtures;
  o.docs_per_batch = 2;  // two scorer calls
  std::vector<std::pair<int64_t, int64_t>> progress;
  TaskResult r = run_task(find_task("arc_easy"), o, fake, [&](int64_t done, int64_t total) {
    progress.push_back({done, total});
  });
  CHECK(r.task == "arc_easy");
  CHECK(r.per_item_acc == std::vector<double>{1, 0, 0});
  CHECK(r.per_item_acc_norm == std::vector<double>{1, 1, 0});
  CHECK(r.metric("acc").value == doctest::Approx(1.0 / 3));
  CHECK(r.metric("acc").stderr_ == doctest::Approx(1.0 / 3));  // sqrt(p(1-p)/(n-1)) = sqrt((2/9)/2)
  CHECK(r.metric("acc").n == 3);
  CHECK(r.metric("acc_norm").value == doctest::Approx(2.0 / 3));
  CHECK(r.metric("acc_norm").stderr_ == doctest::Approx(1.0 / 3));
  CHECK(progress == std::vector<std::pair<int64_t, int64_t>>{{2, 3}, {3, 3}});
  CHECK_THROWS_WITH_AS(r.metric("f1"), doctest::Contains("no metric"), Error);
}

TEST_CASE("score_docs: the acc_norm divisor excludes the leading delimiter") {
  // Option 0 " abcd" (4 chars), option 1 " a" (1 char), loglik -3 and -1: -3/4 > -1/1 picks 0;
  // dividing by the length with the space (5, 2) would pick 1.
  std::vector<TaskDoc> docs(1);
  docs[0].options = {{"ctx", " abcd"}, {"ctx", " a"}};
  docs[0].gold = 0;
  TaskResult r = score_docs(find_task("piqa"), docs, table_scorer({{" abcd", {-3, false, 2}}, {" a", {-1, true, 1}}}));
  CHECK(r.per_item_acc == std::vector<double>{0});
  CHECK(r.per_item_acc_norm == std::vector<double>{1});
  // Ties go to the first option, as np.argmax.
  docs[0].options = {{"ctx", " x"}, {"ctx", " y"}};
  docs[0].gold = 1;
  r = score_docs(find_task("piqa"), docs, table_scorer({{" x", {-1, false, 1}}, {" y", {-1, false, 1}}}));
  CHECK(r.per_item_acc == std::vector<double>{0});
}

TEST_CASE("run_task winogrande: scored per context, acc only") {
  LoglikFn fake = table_scorer({{"Sarah was a much better surgeon than Maria so Sarah", {-5, false, 6}},
                                {"Sarah was a much better surgeon than Maria so Maria", {-3, false, 6}},
                                {"The trophy didn't fit in the suitcase because the trophy", {-2, false, 4}},
                                {"The trophy didn't fit in the suitcase because the suitcase", {-1, false, 4}}},
                               /*by_context=*/true);
  TaskOptions o;
  o.data_root = kFixtures;
  TaskResult r = run_task(find_task("winogrande"), o, fake);
  CHECK(r.per_item_acc == std::vector<double>{1, 0});
  CHECK(r.per_item_acc_norm.empty());
  CHECK(r.metrics.size() == 1);
  CHECK(r.metric("acc").value == doctest::Approx(0.5));
  CHECK(r.metric("acc").stderr_ == doctest::Approx(0.5));
}

TEST_CASE("run_task lambada: acc = greedy, perplexity = exp(-mean loglik)") {
  LoglikFn fake = table_scorer({{" dock", {-2, true, 1}}, {" smiled", {-4, false, 2}}});
  TaskOptions o;
  o.data_root = kFixtures;
  TaskResult r = run_task(find_task("lambada_openai"), o, fake);
  CHECK(r.per_item_acc == std::vector<double>{1, 0});
  CHECK(r.per_item_logprob == std::vector<double>{-2, -4});
  CHECK(r.metric("acc").value == doctest::Approx(0.5));
  CHECK(r.metric("perplexity").value == doctest::Approx(std::exp(3.0)));
  // Delta method: ppl * stderr(loglik); loglik -2, -4 has sample sd sqrt(2), stderr 1.
  CHECK(r.metric("perplexity").stderr_ == doctest::Approx(std::exp(3.0)));
}

TEST_CASE("run_task mmlu: argmax over the letters, per category and per subject") {
  // Always prefers " B": abstract_algebra answers B, B (right); world_religions A, C (wrong).
  LoglikFn fake = table_scorer(
      {{" A", {-2, false, 1}}, {" B", {-0.5, true, 1}}, {" C", {-3, false, 1}}, {" D", {-4, false, 1}}});
  TaskOptions o;
  o.data_root = kFixtures;
  o.subjects = {"abstract_algebra", "world_religions"};
  TaskResult r = run_task(find_task("mmlu"), o, fake);
  CHECK(r.per_item_acc == std::vector<double>{1, 1, 0, 0});
  CHECK(r.metric("acc").value == doctest::Approx(0.5));  // average over questions
  CHECK(r.metric("acc").n == 4);
  CHECK(r.metric("acc/stem").value == doctest::Approx(1.0));
  CHECK(r.metric("acc/humanities").value == doctest::Approx(0.0));
  CHECK(r.metric("acc/abstract_algebra").n == 2);
  CHECK(r.metric("acc/world_religions").value == doctest::Approx(0.0));
  CHECK_THROWS_AS(r.metric("acc/other"), Error);  // no subject of that category was run
}

TEST_CASE("run_task: a scorer returning the wrong number of results is an error") {
  LoglikFn short_fake = [](const std::vector<LoglikRequest>& reqs) {
    return std::vector<LoglikResult>(reqs.size() - 1);
  };
  TaskOptions o;
  o.data_root = kFixtures;
  CHECK_THROWS_WITH_AS(run_task(find_task("boolq"), o, short_fake), doctest::Contains("returned 3 results for 4"),
                       Error);
}

TEST_CASE("qa_average: each task's paper metric, IntactKV's seven-task suite") {
  auto result = [](const std::string& task, double acc, double acc_norm) {
    TaskResult r;
    r.task = task;
    r.metrics = {{"acc", acc, 0, 10}, {"acc_norm", acc_norm, 0, 10}};
    return r;
  };
  std::vector<TaskResult> rs = {result("arc_easy", 0.70, 0.60), result("arc_challenge", 0.40, 0.45),
                                result("hellaswag", 0.55, 0.75), result("openbookqa", 0.30, 0.42)};
  CHECK(qa_average(rs) == doctest::Approx((0.70 + 0.45 + 0.75 + 0.42) / 4));
  CHECK(paper_qa_tasks() == std::vector<std::string>{"openbookqa", "winogrande", "arc_challenge", "arc_easy", "boolq",
                                                     "hellaswag", "lambada_openai"});
  CHECK_THROWS_AS(qa_average({}), Error);
}

// ---- the real datasets of the ikv-data bundle (skipped without it) ----

TEST_CASE("real datasets: sizes and first items") {
  const std::string root = test::data_root();
  if (root.empty()) return;
  TaskOptions o;
  o.data_root = root;
  auto load = [&](const char* task) { return load_task_docs(find_task(task), o); };

  auto arc_e = load("arc_easy");
  CHECK(arc_e.size() == 2376);
  check_mc(arc_e[0],
           "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
           {" Sunlight is the source of energy for nearly all ecosystems.",
            " Most ecosystems are found on land instead of in water.",
            " Carbon dioxide is more available than other gases.", " The producers in all ecosystems are plants."},
           0);
  auto arc_c = load("arc_challenge");
  CHECK(arc_c.size() == 1172);
  check_mc(arc_c[0],
           "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most "
           "likely effect of this increase in rotation?\nAnswer:",
           {" Planetary density will decrease.", " Planetary years will become longer.",
            " Planetary days will become shorter.", " Planetary gravity will become stronger."},
           2);

  auto boolq = load("boolq");
  CHECK(boolq.size() == 3270);
  const std::string& bctx = boolq[0].options[0].context;
  CHECK(bctx.rfind("Ethanol fuel -- All biomass goes through at least some of these steps:", 0) == 0);
  const std::string bend =
      "producing gasoline.\nQuestion: does ethanol take more energy make that produces?\nAnswer:";
  CHECK(bctx.substr(bctx.size() - bend.size()) == bend);
  CHECK(boolq[0].gold == 0);

  auto obqa = load("openbookqa");
  CHECK(obqa.size() == 500);
  check_mc(obqa[0],
           "A person wants to start saving money so that they can afford a nice vacation at the end of the year. After "
           "looking over their budget and expenses, they decide the best way to save money is to",
           {" make more phone calls", " quit eating lunch out", " buy less with monopoly money",
            " have lunch with friends"},
           1);

  auto wino = load("winogrande");
  CHECK(wino.size() == 1267);
  CHECK(wino[0].options[1].context == "Sarah was a much better surgeon than Maria so Maria");
  CHECK(wino[0].options[1].continuation == " always got the easier cases.");
  CHECK(wino[0].gold == 1);

  auto hs = load("hellaswag");
  CHECK(hs.size() == 10042);
  // lm-eval on HF hellaswag would give "... on a roof. He" (ctx_b.capitalize()); see task_qa.cc.
  check_mc(hs[0], "Roof shingle removal: A man is sitting on a roof. he",
           {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.", " is holding a rubik's cube.",
            " starts pulling up roofing on a roof."},
           3);

  auto piqa = load("piqa");
  CHECK(piqa.size() == 1838);
  CHECK(piqa[0].options[0].context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  CHECK(piqa[0].gold == 0);

  auto lambada = load("lambada_openai");
  CHECK(lambada.size() == 5153);
  const std::string& lctx = lambada[0].options[0].context;
  CHECK(lctx.rfind("In my palm is a clear stone, and inside it is a small ivory statuette.", 0) == 0);
  const std::string lend = "grin, I don't care about";
  CHECK(lctx.substr(lctx.size() - lend.size()) == lend);
  CHECK(lambada[0].options[0].continuation == " signs");
}

TEST_CASE("real datasets: MMLU test, 57 subjects, first prompt, pandas 'None' cells") {
  const std::string root = test::data_root();
  if (root.empty()) return;
  TaskOptions o;
  o.data_root = root;
  auto docs = load_task_docs(find_task("mmlu"), o);
  CHECK(docs.size() == 14042);
  std::set<std::string> subjects;
  for (const TaskDoc& d : docs) subjects.insert(d.subject);
  CHECK(subjects.size() == 57);

  const std::string& ctx = docs[0].options[0].context;
  const std::string head =
      kAlgebraHeader + mmlu_shot("Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.", "0", "1", "2", "3", "B");
  CHECK(ctx.substr(0, head.size()) == head);
  const std::string tail =
      "Answer: A\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
      "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:";
  CHECK(ctx.substr(ctx.size() - tail.size()) == tail);
  CHECK(docs[0].gold == 1);

  int64_t nan_prompts = 0;
  for (const TaskDoc& d : docs)
    if (d.subject == "college_computer_science" && d.options[0].context.find("\nA. nan\n") != std::string::npos)
      ++nan_prompts;
  CHECK(nan_prompts == 2);
}
