// Line plots and grouped bar charts: numeric y axis (linear or log), legend right of the data.
#include <cmath>

#include "plot/plot_internal.h"
#include "io/error.h"

namespace ikv::plot::detail {
namespace {

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) { lo = std::min(lo, v), hi = std::max(hi, v); }
  bool empty() const { return lo > hi; }
};

std::string name(const Series& s, size_t i) {
  return s.label.empty() ? std::to_string(i) : "'" + s.label + "'";
}

// NaN (and on a log axis, values <= 0) are gaps, not errors.
bool usable(double y, bool log) { return std::isfinite(y) && (!log || y > 0); }

}  // namespace

void draw_plot(cairo_t* cr, const LinePlot& p, double w, double h, const std::string& where) {
  if (p.series.empty()) fail(where, ": no series to plot");
  Range xr, yr;
  for (size_t i = 0; i < p.series.size(); ++i) {
    const Series& s = p.series[i];
    if (s.x.size() != s.y.size())
      fail(where, ": series ", name(s, i), " has ", s.x.size(), " x values but ", s.y.size(), " y values");
    if (s.x.empty()) fail(where, ": series ", name(s, i), " has no points");
    for (size_t j = 0; j < s.x.size(); ++j)
      if (std::isfinite(s.x[j]) && usable(s.y[j], p.log_y)) xr.add(s.x[j]), yr.add(s.y[j]);
  }
  if (yr.empty()) fail(where, p.log_y ? ": no finite positive values for the log axis" : ": no finite values to plot");

  // Dots on hundreds of points would hide the curve.
  auto markers = [&](const Series& s) { return p.markers && s.x.size() <= 60; };
  double top = draw_title(cr, p.title, w);
  std::vector<LegendItem> items;
  for (size_t i = 0; i < p.series.size(); ++i)
    if (!p.series[i].label.empty()) items.push_back({p.series[i].label, i, false, markers(p.series[i])});
  Legend lg = layout_legend(cr, std::move(items), h - top - 60, w * 0.4);
  double right = lg.items.empty() ? 20 : lg.width + 30;
  Axis ya = make_axis(yr.lo, yr.hi, p.log_y, tick_target(h - top - 60, 55));
  set_font(cr, kTickSize);
  double left = left_margin(cr, ya.max_label_width(cr), p.ylabel);
  Axis xa = fit_x_axis(cr, xr.lo, xr.hi, w - left - right);
  Rect a = plot_area(left, top, right, bottom_margin(cr, text_height(cr), p.xlabel), w, h, where);
  draw_y_axis(cr, a, ya);
  draw_x_axis(cr, a, xa);

  cairo_save(cr);
  cairo_rectangle(cr, a.x - 6, a.y - 6, a.w + 12, a.h + 12);  // room for markers on the edge
  cairo_clip(cr);
  for (size_t i = 0; i < p.series.size(); ++i) {
    const Series& s = p.series[i];
    set_series_style(cr, i);
    auto ok = [&](size_t j) { return std::isfinite(s.x[j]) && usable(s.y[j], p.log_y); };
    auto px = [&](size_t j) { return a.x + xa.frac(s.x[j]) * a.w; };
    auto py = [&](size_t j) { return a.bottom() - ya.frac(s.y[j]) * a.h; };
    // Each run of usable points is one polyline; a lone point gets a dot so it stays visible.
    for (size_t j = 0; j < s.x.size();) {
      if (!ok(j)) { ++j; continue; }
      size_t k = j;
      while (k + 1 < s.x.size() && ok(k + 1)) ++k;
      if (k == j) {
        cairo_arc(cr, px(j), py(j), 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
      } else {
        cairo_move_to(cr, px(j), py(j));
        for (size_t m = j + 1; m <= k; ++m) cairo_line_to(cr, px(m), py(m));
        cairo_stroke(cr);
      }
      j = k + 1;
    }
    if (markers(s)) {
      for (size_t j = 0; j < s.x.size(); ++j)
        if (ok(j)) cairo_new_sub_path(cr), cairo_arc(cr, px(j), py(j), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  cairo_restore(cr);
  draw_frame(cr, a);
  draw_axis_labels(cr, a, p.xlabel, p.ylabel, h);
  draw_legend(cr, lg, a.right() + 16, a.y);
}

void draw_plot(cairo_t* cr, const BarPlot& p, double w, double h, const std::string& where) {
  if (p.categories.empty()) fail(where, ": no categories");
  if (p.groups.empty()) fail(where, ": no groups of bars");
  size_t nc = p.categories.size(), ng = p.groups.size();
  Range yr;
  for (size_t i = 0; i < ng; ++i) {
    const Series& g = p.groups[i];
    if (g.y.size() != nc)
      fail(where, ": group ", name(g, i), " has ", g.y.size(), " values for ", nc, " categories");
    for (double v : g.y)
      if (usable(v, p.log_y)) yr.add(v);
    if (g.lo.size() != g.hi.size() || (!g.lo.empty() && g.lo.size() != nc))
      fail(where, ": group ", name(g, i), " has ", g.lo.size(), "/", g.hi.size(), " interval bounds for ", nc,
           " categories");
    for (size_t j = 0; j < g.lo.size(); ++j)
      for (double v : {g.lo[j], g.hi[j]})
        if (usable(v, p.log_y)) yr.add(v);
  }
  if (yr.empty()) fail(where, p.log_y ? ": no finite positive values for the log axis" : ": no finite values to plot");
  if (!p.log_y) yr.add(0);  // linear bars grow from zero

  double top = draw_title(cr, p.title, w);
  std::vector<LegendItem> items;
  for (size_t i = 0; i < ng; ++i)
    if (!p.groups[i].label.empty()) items.push_back({p.groups[i].label, i, true, false});
  Legend lg = layout_legend(cr, std::move(items), h - top - 60, w * 0.4);
  double right = lg.items.empty() ? 20 : lg.width + 30;
  Axis ya = make_axis(yr.lo, yr.hi, p.log_y, tick_target(h - top - 60, 55), true);
  set_font(cr, kTickSize);
  double left = left_margin(cr, ya.max_label_width(cr), p.ylabel);
  CatLayout cl = layout_categories(cr, p.categories, (w - left - right) / nc);
  if (cl.overhang_left + 6 > left) {  // slanted labels must not run off the left edge
    left = cl.overhang_left + 6;
    cl = layout_categories(cr, p.categories, (w - left - right) / nc);
  }
  Rect a = plot_area(left, top, right, bottom_margin(cr, cl.height, p.xlabel), w, h, where);
  draw_y_axis(cr, a, ya);

  double slot = a.w / nc, bw = slot * 0.8 / ng;
  double base = p.log_y ? a.bottom() : a.bottom() - ya.frac(0) * a.h;
  for (size_t i = 0; i < ng; ++i) {
    set_rgb(cr, palette_color(i));
    for (size_t j = 0; j < nc; ++j) {
      double v = p.groups[i].y[j];
      if (!usable(v, p.log_y)) continue;
      double y = a.bottom() - ya.frac(v) * a.h;
      cairo_rectangle(cr, a.x + j * slot + 0.1 * slot + i * bw, std::min(y, base), bw, std::fabs(base - y));
    }
    cairo_fill(cr);
  }
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);  // whiskers over the bars: the intervals
  cairo_set_line_width(cr, 1.2);
  for (size_t i = 0; i < ng; ++i)
    for (size_t j = 0; j < p.groups[i].lo.size(); ++j) {
      const double lo = p.groups[i].lo[j], hi = p.groups[i].hi[j];
      if (!usable(lo, p.log_y) || !usable(hi, p.log_y)) continue;
      const double x = a.x + j * slot + 0.1 * slot + (i + 0.5) * bw, cap = std::min(6.0, bw * 0.3);
      const double y0 = a.bottom() - ya.frac(lo) * a.h, y1 = a.bottom() - ya.frac(hi) * a.h;
      cairo_move_to(cr, x, y0), cairo_line_to(cr, x, y1);
      cairo_move_to(cr, x - cap, y0), cairo_line_to(cr, x + cap, y0);
      cairo_move_to(cr, x - cap, y1), cairo_line_to(cr, x + cap, y1);
    }
  cairo_stroke(cr);
  if (!p.log_y && ya.lo < 0) {  // a zero line when bars go both ways
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, a.x, std::floor(base) + 0.5), cairo_line_to(cr, a.right(), std::floor(base) + 0.5);
    cairo_stroke(cr);
  }
  draw_frame(cr, a);
  draw_categories(cr, p.categories, cl, a.x, slot, a.bottom() + kTickLen + 2);
  draw_axis_labels(cr, a, p.xlabel, p.ylabel, h);
  draw_legend(cr, lg, a.right() + 16, a.y);
}

}  // namespace ikv::plot::detail
