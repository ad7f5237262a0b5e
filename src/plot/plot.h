// Small plotting for experiment reports: line plots, grouped bar charts and heatmaps, drawn with
// Cairo into PNG or SVG. Enough for the suite's figures (activation peaks per token, attention
// maps, MSE vs IntactKV size, calibration loss curves, perplexity/accuracy per method); not a
// general plotting library.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ikv::plot {

// One line (LinePlot) or one group of bars (BarPlot; x unused there). NaN y values are gaps;
// on a log axis so are values <= 0.
struct Series {
  std::string label;  // shown in the legend; series with empty labels get no legend entry
  std::vector<double> x, y;
  // BarPlot only: an interval per bar (e.g. a 95% CI), drawn as a whisker; empty = none, else one
  // lo and one hi per value (NaN = no whisker on that bar).
  std::vector<double> lo = {}, hi = {};
};

struct LinePlot {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool log_y = false;
  bool markers = true;  // dropped automatically for series with more than 60 points
};

// Grouped bars: groups[i].y[j] is the value of group i at categories[j].
struct BarPlot {
  std::string title, xlabel, ylabel;
  std::vector<std::string> categories;
  std::vector<Series> groups;
  bool log_y = false;
};

// values is row-major rows x cols; row 0 is drawn at the top (like a matrix). Labels are optional
// (empty = numeric indices) but if given must have one entry per row / column. NaN cells are grey.
struct Heatmap {
  std::string title, xlabel, ylabel;
  int64_t rows = 0, cols = 0;
  std::vector<double> values;
  std::vector<std::string> row_labels, col_labels;
};

// Writes the plot to path; the format comes from the extension (.png or .svg). The file is
// written to path + ".tmp" and renamed, so an interrupted run never leaves half a plot. Bad input
// (no series, x/y size mismatch, no finite data, unknown extension, unwritable path) throws
// ikv::Error naming the path and the plot title.
void save_plot(const LinePlot& plot, const std::string& path, int width = 800, int height = 500);
void save_plot(const BarPlot& plot, const std::string& path, int width = 800, int height = 500);
void save_plot(const Heatmap& plot, const std::string& path, int width = 800, int height = 600);

// The SVG document as a string, byte-identical to what save_plot writes for a .svg path. Element
// ids carry a per-content prefix so several plots can be inlined into one HTML page.
std::string plot_svg(const LinePlot& plot, int width = 800, int height = 500);
std::string plot_svg(const BarPlot& plot, int width = 800, int height = 500);
std::string plot_svg(const Heatmap& plot, int width = 800, int height = 600);

// The PNG, base64-encoded, for <img src="data:image/png;base64,...">.
std::string plot_png_base64(const LinePlot& plot, int width = 800, int height = 500);
std::string plot_png_base64(const BarPlot& plot, int width = 800, int height = 500);
std::string plot_png_base64(const Heatmap& plot, int width = 800, int height = 600);

// --- Building blocks, public so tests (and reports) can use them ---

// "Nice" linear ticks: steps of 1, 2 or 5 x 10^k, about `target` intervals, first tick <= lo and
// last tick >= hi (the axis then spans first..last). lo == hi is widened around the value.
// nice_ticks(0, 0.97) -> 0, 0.2, 0.4, 0.6, 0.8, 1.0.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

// Decade ticks for a log axis covering [lo, hi] (both > 0): log_ticks(3, 457) -> 1, 10, 100, 1000.
// Wide ranges step several decades at a time to keep about 8 labels.
std::vector<double> log_ticks(double lo, double hi);

// Tick label text: decimals just fine enough for `step`, scientific ("2.5e-5") for tiny or huge
// values.
std::string format_tick(double value, double step);

using Rgb = std::array<uint8_t, 3>;
// The fixed colour-blind-friendly palette (Okabe-Ito) used for series and bar groups, cycled.
Rgb palette_color(size_t index);
// Sequential colormap approximating viridis; t is clamped to [0, 1] (0 = dark purple, 1 = yellow).
Rgb colormap(double t);

}  // namespace ikv::plot
