// mean/stderr as lm-eval computes it, and the paired bootstrap CI.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "eval/stats.h"
#include "io/error.h"

using namespace ikv;
using namespace ikv::eval;

TEST_CASE("mean_stderr: sample standard deviation / sqrt(n)") {
  MeanStderr m = mean_stderr({1, 0, 1, 1});
  CHECK(m.mean == doctest::Approx(0.75));
  CHECK(m.stderr_ == doctest::Approx(std::sqrt(0.75 * 0.25 / 3)));  // sqrt(p(1-p)/(n-1)) = 0.25
  CHECK(m.n == 4);

  m = mean_stderr({2, 4, 4, 4, 5, 5, 7, 9});
  CHECK(m.mean == doctest::Approx(5));
  CHECK(m.stderr_ == doctest::Approx(std::sqrt(32.0 / 7) / std::sqrt(8.0)));

  m = mean_stderr({0.3});
  CHECK(m.mean == doctest::Approx(0.3));
  CHECK(m.stderr_ == 0);
  m = mean_stderr({});
  CHECK(m.n == 0);
  CHECK(m.mean == 0);
}

TEST_CASE("paired bootstrap: identical outcomes give [0, 0]") {
  std::vector<double> a = {1, 0, 1, 1, 0, 0, 1};
  BootstrapCI ci = paired_bootstrap(a, a);
  CHECK(ci.diff == 0);
  CHECK(ci.lo == 0);
  CHECK(ci.hi == 0);
  CHECK(ci.resamples == 1000);
}

TEST_CASE("paired bootstrap: covers the true difference, width as the normal approximation") {
  // 2000 items: a is right on 60%, b on 65%, with pairs disagreeing often (independent draws).
  std::mt19937_64 rng(7);
  std::bernoulli_distribution pa(0.6), pb(0.65);
  std::vector<double> a(2000), b(2000);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = pa(rng);
    b[i] = pb(rng);
  }
  double diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += b[i] - a[i];
  diff /= static_cast<double>(a.size());
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  const double se = mean_stderr(d).stderr_;

  BootstrapCI ci = paired_bootstrap(a, b, 2000, 42);
  CHECK(ci.diff == doctest::Approx(diff));
  CHECK(ci.lo < diff);
  CHECK(ci.hi > diff);
  CHECK(ci.lo < 0.05);  // the population difference
  CHECK(ci.hi > 0.05);
  CHECK((ci.hi - ci.lo) == doctest::Approx(2 * 1.96 * se).epsilon(0.15));

  // A real effect on the same items: b = a with 10% of a's misses turned into hits.
  std::vector<double> better = a;
  int flipped = 0;
  for (size_t i = 0; i < better.size(); ++i)
    if (better[i] == 0 && i % 10 == 0) {
      better[i] = 1;
      ++flipped;
    }
  BootstrapCI up = paired_bootstrap(a, better);
  CHECK(up.diff == doctest::Approx(flipped / 2000.0));
  CHECK(up.lo > 0);
}

TEST_CASE("paired bootstrap: deterministic for a seed") {
  std::vector<double> a = {1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1};
  std::vector<double> b = {1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1};
  BootstrapCI x = paired_bootstrap(a, b, 500, 123);
  BootstrapCI y = paired_bootstrap(a, b, 500, 123);
  CHECK(x.lo == y.lo);
  CHECK(x.hi == y.hi);
  BootstrapCI z = paired_bootstrap(a, b, 500, 124);
  CHECK((z.lo != x.lo || z.hi != x.hi));
  CHECK(x.diff == doctest::Approx(2.0 / 12));
}

TEST_CASE("paired bootstrap: mismatched or empty inputs are errors") {
  CHECK_THROWS_WITH_AS(paired_bootstrap({1, 0}, {1}), doctest::Contains("same items"), Error);
  CHECK_THROWS_AS(paired_bootstrap({}, {}), Error);
  CHECK_THROWS_AS(paired_bootstrap({1}, {1}, 0), Error);
}
