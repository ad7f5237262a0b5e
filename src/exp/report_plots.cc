#include "exp/report_plots.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>

#include "plot/plot.h"
#include "exp/report.h"
#include "io/text.h"

namespace ikv::exp {
namespace {

std::string figure(const std::string& svg, const std::string& caption) {
  return "<figure>" + svg + "<figcaption>" + io::escape_html(caption) + "</figcaption></figure>\n";
}

}  // namespace

std::vector<std::string> report_figures(const std::vector<CellRecord>& cells) {
  std::vector<std::string> out;
  // Per (model, task): the change each IntactKV variant makes against the same method without it,
  // with its paired-bootstrap 95% CI (the table's CI section), as bars from zero: a 0.3% change
  // shows, where bars of the metric itself would all look alike. PPL: % change (from the mean
  // window NLL difference over the tokens per window); accuracy: points, of the table's metric.
  std::map<std::pair<std::string, std::string>, std::vector<const PairedComparison*>> by_task;
  const std::vector<PairedComparison> cis = intactkv_vs_baseline(cells, 1000, ReportOptions{}.seed);
  auto cell_of = [&](const PairedComparison& c, const std::string& intactkv) -> const CellRecord* {
    for (const CellRecord& r : cells)
      if (r.model == c.model && r.quant == c.quant && r.kv_bits == c.kv_bits && r.intactkv == intactkv &&
          r.task == c.task)
        return &r;
    return nullptr;
  };
  for (const PairedComparison& c : cis) {
    const CellRecord* base = cell_of(c, "none");
    if (!base) continue;
    const bool ppl = base->task_kind == "ppl";
    if ((ppl && c.metric != "window_nll") || (!ppl && c.metric != table_metric(*base))) continue;
    by_task[{c.model, c.task}].push_back(&c);
  }
  for (const auto& [mt, comparisons] : by_task) {
    const CellRecord* base = cell_of(*comparisons.front(), "none");
    const bool ppl = base->task_kind == "ppl";
    plot::BarPlot p;
    p.title = mt.first + " — " + mt.second + ": IntactKV vs the same method without it";
    p.ylabel = ppl ? "Δ perplexity % (95% CI; < 0 is better)" : "Δ " + table_metric(*base) + " points (95% CI)";
    std::vector<std::string> methods, variants;
    std::map<std::pair<std::string, std::string>, std::array<double, 3>> delta;  // value, lo, hi
    for (const PairedComparison* c : comparisons) {
      const std::string method = method_label(c->quant, c->kv_bits);
      const std::string variant = intactkv_row_label(c->intactkv).substr(2);
      if (std::find(methods.begin(), methods.end(), method) == methods.end()) methods.push_back(method);
      if (std::find(variants.begin(), variants.end(), variant) == variants.end()) variants.push_back(variant);
      std::array<double, 3> d = {c->diff, c->lo, c->hi};
      const CellRecord* b = cell_of(*c, "none");
      const Metric* m = b ? b->metric(kPplMetric) : nullptr;
      for (double& x : d)
        x = ppl ? (m && m->n > 0 ? 100.0 * std::expm1(x * static_cast<double>(c->n) / static_cast<double>(m->n))
                                  : std::nan(""))
                : 100.0 * x;
      delta[{method, variant}] = d;
    }
    p.categories = methods;
    for (const auto& v : variants) {
      plot::Series s;
      s.label = v;
      for (const auto& m : methods) {
        auto it = delta.find({m, v});
        s.y.push_back(it == delta.end() ? std::nan("") : it->second[0]);
        s.lo.push_back(it == delta.end() ? std::nan("") : it->second[1]);
        s.hi.push_back(it == delta.end() ? std::nan("") : it->second[2]);
      }
      p.groups.push_back(s);
    }
    out.push_back(figure(plot::plot_svg(p, 760, 420), p.title));
  }
  // MSE sweeps: metrics "mse_last@S" per size S.
  for (const auto& c : cells) {
    if (c.task_kind != "mse_sweep") continue;
    plot::LinePlot p;
    p.title = c.model + " " + method_label(c.quant, c.kv_bits) + ": MSE vs IntactKV size";
    p.xlabel = "IntactKV size (tokens)";
    p.ylabel = "MSE of decoder-layer output";
    p.log_y = true;
    plot::Series last{"last layer", {}, {}}, mean{"mean over layers", {}, {}};
    for (const auto& m : c.metrics) {
      auto at = m.name.find('@');
      if (at == std::string::npos) continue;
      const double size = std::stod(m.name.substr(at + 1));
      (m.name.rfind("mse_last", 0) == 0 ? last : mean).x.push_back(size);
      (m.name.rfind("mse_last", 0) == 0 ? last : mean).y.push_back(m.value);
    }
    if (last.x.empty()) continue;
    p.series = {last, mean};
    out.push_back(figure(plot::plot_svg(p, 760, 420), p.title));
  }
  // Calibration loss curves, one per calibrated prefix (every cell using it carries the same log).
  std::set<std::string> drawn;
  for (const auto& c : cells) {
    const ItemOutcomes* loss = c.outcomes_of("calibration_loss");
    if (!loss || loss->values.empty() || !drawn.insert(c.model + c.quant + std::to_string(c.kv_bits) + c.intactkv).second)
      continue;
    plot::LinePlot p;
    p.title = c.model + " " + method_label(c.quant, c.kv_bits) + ": IntactKV calibration loss";
    p.xlabel = "optimizer step";
    p.ylabel = "Σ layers MSE / 2";
    p.log_y = true;
    plot::Series s{"training loss", {}, loss->values};
    for (size_t i = 0; i < s.y.size(); ++i) s.x.push_back(static_cast<double>(i + 1));
    p.series = {s};
    out.push_back(figure(plot::plot_svg(p, 760, 420), p.title));
  }
  return out;
}

}  // namespace ikv::exp
