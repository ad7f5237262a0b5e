#include "eval/kld.h"

#include <cmath>

#include "io/error.h"

namespace ikv::eval {
namespace {

// log-softmax of a row into out (double for the KL sum's accuracy).
void log_softmax(const float* row, int64_t n, std::vector<double>& out) {
  out.resize(n);
  double mx = row[0];
  for (int64_t j = 1; j < n; ++j) mx = std::max(mx, double(row[j]));
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(row[j] - mx);
  const double lse = mx + std::log(s);
  for (int64_t j = 0; j < n; ++j) out[j] = row[j] - lse;
}

}  // namespace

KldResult kl_divergence(const engine::Engine& fp, const engine::Engine& quant, const std::vector<int32_t>& stream,
                        const KldOptions& opt, const intactkv::Prefix* prefix) {
  const model::Config& c = fp.config();
  const int64_t ctx = opt.ctx, V = c.vocab;
  if (ctx < 3 || ctx > c.max_pos) fail("kld: ctx ", ctx, " must be within 3..", c.max_pos);
  const int64_t n_windows = std::min<int64_t>(opt.windows > 0 ? opt.windows : INT64_MAX,
                                              static_cast<int64_t>(stream.size()) / ctx);
  if (n_windows == 0) fail("kld: the text is shorter than one window of ", ctx, " tokens");
  const int64_t P = prefix ? prefix->size() : 0;
  engine::KVCache fc = engine::make_kv_cache(c, ctx), qc = engine::make_kv_cache(c, P + ctx, opt.kv_bits);
  if (prefix) intactkv::install_prefix(qc, *prefix, quant);
  KldResult r;
  std::vector<float> lf, lq;
  std::vector<double> pf, pq;
  double total = 0, sq = 0;
  int64_t agree = 0;
  for (int64_t w = 0; w < n_windows; ++w) {
    std::vector<int32_t> win(stream.begin() + w * ctx, stream.begin() + (w + 1) * ctx);
    if (c.has_bos()) win[0] = c.bos_id;
    fc.reset();
    qc.reset();
    fp.forward(fc, win.data(), ctx, &lf, 1);
    const int64_t m = prefix ? intactkv::matched_prefix_length(*prefix, win) : 0;
    const int64_t first = std::max<int64_t>(1, m);
    quant.forward(qc, win.data() + m, ctx - m, &lq, first - m);
    double wsum = 0;
    int64_t wn = 0;
    for (int64_t i = first; i <= ctx - 2; ++i) {
      const float* rf = &lf[(i - 1) * V];
      const float* rq = &lq[(i - first) * V];
      log_softmax(rf, V, pf);
      log_softmax(rq, V, pq);
      double kl = 0;
      int64_t af = 0, aq = 0;
      for (int64_t j = 0; j < V; ++j) {
        kl += std::exp(pf[j]) * (pf[j] - pq[j]);
        if (pf[j] > pf[af]) af = j;
        if (pq[j] > pq[aq]) aq = j;
      }
      wsum += kl;
      sq += kl * kl;
      agree += af == aq;
      ++wn;
    }
    total += wsum;
    r.tokens += wn;
    r.window_kld.push_back(wsum / wn);
  }
  r.mean_kld = total / r.tokens;
  r.stderr_kld = std::sqrt(std::max(0.0, sq / r.tokens - r.mean_kld * r.mean_kld) / std::max<int64_t>(1, r.tokens - 1));
  r.top1_agreement = static_cast<double>(agree) / r.tokens;
  return r;
}

}  // namespace ikv::eval
