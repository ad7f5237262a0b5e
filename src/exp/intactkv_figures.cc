#include "exp/intactkv_figures.h"

#include <algorithm>
#include <filesystem>

#include "io/text.h"
#include "io/mapped_file.h"
#include "plot/plot.h"

namespace ikv::exp {

void write_inspect_outputs(const intactkv::PivotReport& r, const std::string& out_dir, const std::string& title) {
  std::filesystem::create_directories(out_dir);
  const int64_t N = r.map_positions, L = static_cast<int64_t>(r.attention.size());
  io::write_file_atomic(out_dir + "/inspect.md", "# " + io::escape_md(title) + "\n\n" + intactkv::format_inspect_table(r, N));

  plot::BarPlot peaks;
  peaks.title = title + ": peak |activation| per token";
  peaks.xlabel = "token";
  peaks.ylabel = "max |h| over layers and channels";
  peaks.log_y = true;
  plot::Series s;
  s.label = "peak |h|";
  const int64_t shown = std::min<int64_t>(r.tokens.size(), 48);
  for (int64_t t = 0; t < shown; ++t) {
    peaks.categories.push_back(std::to_string(t) + ":" + r.tokens[t].piece);
    s.y.push_back(r.tokens[t].peak);
  }
  peaks.groups.push_back(s);
  plot::Heatmap mass;
  mass.title = title + ": attention mass received";
  mass.xlabel = "key position";
  mass.ylabel = "layer";
  mass.rows = L;
  mass.cols = N;
  for (int64_t l = 0; l < L; ++l) {
    mass.row_labels.push_back(std::to_string(l + 1));
    for (int64_t k = 0; k < N; ++k) mass.values.push_back(r.attention[l][k]);
  }
  for (const char* ext : {".png", ".svg"}) {
    plot::save_plot(peaks, out_dir + "/peaks" + ext);
    plot::save_plot(mass, out_dir + "/attention_mass" + ext);
    for (int64_t l = 0; l < L; ++l) {
      plot::Heatmap m;
      m.title = title + ": attention, layer " + std::to_string(l + 1) + " (mean over heads)";
      m.xlabel = "key position";
      m.ylabel = "query position";
      m.rows = m.cols = N;
      m.values = r.first_maps[l];
      plot::save_plot(m, out_dir + "/attention_layer" + std::to_string(l + 1) + ext, 640, 600);
    }
  }
}

void plot_mse_sweep(const intactkv::MseSweepResult& r, const std::string& path_stem, const std::string& title) {
  plot::LinePlot p;
  p.title = title;
  p.xlabel = "IntactKV size (tokens)";
  p.ylabel = "MSE of decoder-layer output";
  p.log_y = true;
  const size_t L = r.layer_mse.empty() ? 0 : r.layer_mse[0].size();
  for (size_t l = 0; l < L; ++l) {
    plot::Series s;
    s.label = "layer " + std::to_string(l + 1);
    for (size_t i = 0; i < r.sizes.size(); ++i) s.x.push_back(r.sizes[i]), s.y.push_back(r.layer_mse[i][l]);
    p.series.push_back(s);
  }
  plot::save_plot(p, path_stem + ".png");
  plot::save_plot(p, path_stem + ".svg");
}

void plot_calibration_loss(const std::vector<intactkv::StepLog>& log, const std::string& stem, const std::string& title) {
  if (log.empty()) return;
  plot::Series total{"total (sum over layers)", {}, {}}, last{"last layer", {}, {}};
  for (const intactkv::StepLog& s : log) {
    total.x.push_back(s.step), total.y.push_back(s.loss);
    last.x.push_back(s.step), last.y.push_back(s.loss_last_layer);
  }
  plot::LinePlot plot{title, "optimizer step", "loss (mean over the step's samples)", {total, last}, false, true};
  plot::save_plot(plot, stem + ".loss.png");
  plot::save_plot(plot, stem + ".loss.svg");
}

}  // namespace ikv::exp
