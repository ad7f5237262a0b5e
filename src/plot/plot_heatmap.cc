// Heatmaps: cells coloured with the viridis-like colormap, row 0 at the top, colour bar on the right.
#include <cmath>

#include "plot/plot_internal.h"
#include "io/error.h"

namespace ikv::plot::detail {
namespace {

// Integer positions 0..n-1 worth labelling when there are no label strings (nice steps, >= 1).
std::vector<int64_t> index_ticks(int64_t n, double length) {
  std::vector<int64_t> out;
  for (double t : nice_ticks(0, double(n - 1), tick_target(length, 60)))
    if (t >= 0 && t <= n - 1 && t == std::floor(t)) out.push_back(static_cast<int64_t>(t));
  return out;
}

void tick_mark(cairo_t* cr, double x0, double y0, double x1, double y1) {
  cairo_save(cr);
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  cairo_set_line_width(cr, 1);
  cairo_move_to(cr, x0, y0), cairo_line_to(cr, x1, y1), cairo_stroke(cr);
  cairo_restore(cr);
}

}  // namespace

void draw_plot(cairo_t* cr, const Heatmap& p, double w, double h, const std::string& where) {
  if (p.rows <= 0 || p.cols <= 0) fail(where, ": heatmap has ", p.rows, "x", p.cols, " cells");
  if (static_cast<int64_t>(p.values.size()) != p.rows * p.cols)
    fail(where, ": ", p.values.size(), " values for ", p.rows, "x", p.cols, " cells");
  if (!p.row_labels.empty() && static_cast<int64_t>(p.row_labels.size()) != p.rows)
    fail(where, ": ", p.row_labels.size(), " row labels for ", p.rows, " rows");
  if (!p.col_labels.empty() && static_cast<int64_t>(p.col_labels.size()) != p.cols)
    fail(where, ": ", p.col_labels.size(), " column labels for ", p.cols, " columns");
  double lo = INFINITY, hi = -INFINITY;
  for (double v : p.values)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) fail(where, ": no finite values to plot");
  if (hi - lo <= 1e-12 * std::max(1.0, std::fabs(lo))) {  // constant map: show it mid-scale
    double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
  }

  // Layout: colour bar labels set the right margin, row labels the left, column labels the bottom.
  double top = draw_title(cr, p.title, w);
  set_font(cr, kTickSize);
  double th = text_height(cr);
  std::vector<double> cticks;
  auto all = nice_ticks(lo, hi, tick_target(h - top - 60, 55));
  double cstep = all.size() > 1 ? all[1] - all[0] : 1;
  for (double t : all)
    if (t >= lo - 1e-9 * cstep && t <= hi + 1e-9 * cstep) cticks.push_back(t);
  double cwidth = 0;
  for (double t : cticks) cwidth = std::max(cwidth, text_width(cr, format_tick(t, cstep)));
  const double bar_gap = 24, bar_w = 16;
  double right = bar_gap + bar_w + kTickLen + 4 + cwidth + kPad;

  double row_w = 0;
  auto rticks = index_ticks(p.rows, h - top - 60);
  if (!p.row_labels.empty())
    for (const auto& l : p.row_labels) row_w = std::max(row_w, text_width(cr, fit_text(cr, l, 120)));
  else
    for (int64_t t : rticks) row_w = std::max(row_w, text_width(cr, std::to_string(t)));
  double left = left_margin(cr, row_w, p.ylabel);
  CatLayout cl;
  cl.height = th;
  if (!p.col_labels.empty()) cl = layout_categories(cr, p.col_labels, (w - left - right) / p.cols);
  Rect a = plot_area(left, top, right, bottom_margin(cr, cl.height, p.xlabel), w, h, where);

  // Cells as an image with one pixel per output pixel: nearest-cell sampling keeps cell edges
  // sharp in PNG and SVG alike, and a 32 x 2048 map stays small in SVG (one embedded image).
  int iw = static_cast<int>(a.w), ih = static_cast<int>(a.h);
  cairo_surface_t* img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, iw, ih);
  cairo_surface_flush(img);
  unsigned char* data = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img);
  for (int y = 0; y < ih; ++y) {
    auto r = std::min<int64_t>(p.rows - 1, static_cast<int64_t>((y + 0.5) * p.rows / ih));
    auto* px = reinterpret_cast<uint32_t*>(data + static_cast<size_t>(y) * stride);
    for (int x = 0; x < iw; ++x) {
      auto c = std::min<int64_t>(p.cols - 1, static_cast<int64_t>((x + 0.5) * p.cols / iw));
      double v = p.values[r * p.cols + c];
      Rgb col = std::isfinite(v) ? colormap((v - lo) / (hi - lo)) : Rgb{215, 215, 215};  // grey = missing
      px[x] = uint32_t(col[0]) << 16 | uint32_t(col[1]) << 8 | col[2];
    }
  }
  cairo_surface_mark_dirty(img);
  cairo_set_source_surface(cr, img, a.x, a.y);
  cairo_rectangle(cr, a.x, a.y, iw, ih);
  cairo_fill(cr);
  cairo_surface_destroy(img);

  // Row and column labels: strings centred on their cells, or numeric indices at nice steps.
  set_font(cr, kTickSize);
  cairo_set_source_rgb(cr, 0, 0, 0);
  double ch = a.h / p.rows, cw = a.w / p.cols;
  auto row_label = [&](int64_t r, const std::string& s) {
    double y = a.y + (r + 0.5) * ch;
    tick_mark(cr, a.x - kTickLen, y, a.x, y);
    draw_text(cr, s, a.x - kTickLen - 4, y, 1, 0.5);
  };
  if (!p.row_labels.empty()) {
    auto step = static_cast<int64_t>(std::ceil((th + 2) / ch));
    for (int64_t r = 0; r < p.rows; r += step) row_label(r, fit_text(cr, p.row_labels[r], 120));
  } else {
    for (int64_t t : rticks) row_label(t, std::to_string(t));
  }
  if (!p.col_labels.empty()) {
    draw_categories(cr, p.col_labels, cl, a.x, cw, a.bottom() + kTickLen + 2);
  } else {
    for (int64_t t : index_ticks(p.cols, a.w)) {
      double x = a.x + (t + 0.5) * cw;
      tick_mark(cr, x, a.bottom(), x, a.bottom() + kTickLen);
      draw_text(cr, std::to_string(t), x, a.bottom() + kTickLen + 4, 0.5, 0);
    }
  }

  // Colour bar: a vector gradient through the same control points as the cells.
  Rect cb{a.right() + bar_gap, a.y, bar_w, a.h};
  cairo_pattern_t* grad = cairo_pattern_create_linear(0, cb.bottom(), 0, cb.y);
  for (int k = 0; k <= 10; ++k) {
    Rgb c = colormap(k / 10.0);
    cairo_pattern_add_color_stop_rgb(grad, k / 10.0, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
  }
  cairo_rectangle(cr, cb.x, cb.y, cb.w, cb.h);
  cairo_set_source(cr, grad);
  cairo_fill(cr);
  cairo_pattern_destroy(grad);
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (double t : cticks) {
    double y = std::floor(cb.bottom() - (t - lo) / (hi - lo) * cb.h) + 0.5;
    tick_mark(cr, cb.right(), y, cb.right() + kTickLen, y);
    draw_text(cr, format_tick(t, cstep), cb.right() + kTickLen + 4, y, 0, 0.5);
  }
  draw_axis_labels(cr, a, p.xlabel, p.ylabel, h);
}

}  // namespace ikv::plot::detail
