#include "exp/report_plots.h"

#include <algorithm>
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
  // One grouped bar chart per (model, task): categories = methods, groups = IntactKV variants.
  std::map<std::pair<std::string, std::string>, std::vector<const CellRecord*>> by_task;
  for (const auto& c : cells)
    if (c.task_kind == "ppl" || c.task_kind == "qa" || c.task_kind == "mmlu") by_task[{c.model, c.task}].push_back(&c);
  for (const auto& [mt, group] : by_task) {
    const bool ppl = group.front()->task_kind == "ppl";
    plot::BarPlot p;
    p.title = mt.first + " — " + mt.second;
    p.ylabel = ppl ? "perplexity (lower is better)" : "accuracy % (higher is better)";
    std::vector<std::string> methods, variants;
    std::map<std::pair<std::string, std::string>, double> value;
    for (const CellRecord* c : group) {
      const Metric* m = c->metric(ppl ? kPplMetric : kAccMetric);
      if (!m) continue;
      const std::string method = method_label(c->quant, c->kv_bits);
      const std::string variant = c->intactkv == "none" ? "no IntactKV" : intactkv_row_label(c->intactkv).substr(2);
      if (std::find(methods.begin(), methods.end(), method) == methods.end()) methods.push_back(method);
      if (std::find(variants.begin(), variants.end(), variant) == variants.end()) variants.push_back(variant);
      value[{method, variant}] = ppl ? m->value : 100 * m->value;
    }
    if (methods.empty()) continue;
    p.categories = methods;
    for (const auto& v : variants) {
      plot::Series s;
      s.label = v;
      for (const auto& m : methods) {
        auto it = value.find({m, v});
        s.y.push_back(it == value.end() ? std::nan("") : it->second);
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
