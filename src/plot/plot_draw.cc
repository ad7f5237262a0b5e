// Drawing pieces shared by the plot kinds: text, axes, category labels, legend.
#include <algorithm>
#include <cmath>

#include "plot/plot_internal.h"
#include "io/error.h"

namespace ikv::plot::detail {

// ---------------------------------------------------------------- text

namespace {
constexpr char kPowerMark = '\x1d';  // tick label "\x1d<k>" means 10^k, drawn with a superscript

// Cairo rejects invalid UTF-8 (and then stops drawing altogether), so bad bytes become '?'.
std::string valid_utf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok) out.append(s, i, n), i += n;
    else out += '?', ++i;
  }
  return out;
}

double font_size(cairo_t* cr) {
  cairo_matrix_t m;
  cairo_get_font_matrix(cr, &m);
  return m.yy;
}

double advance(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t te;
  cairo_text_extents(cr, s.c_str(), &te);
  return te.x_advance;
}
}  // namespace

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_height(cairo_t* cr) { return 0.95 * font_size(cr); }

double text_width(cairo_t* cr, const std::string& s) {
  if (s.empty() || s[0] != kPowerMark) return advance(cr, valid_utf8(s));
  double size = font_size(cr), w = advance(cr, "10");
  cairo_set_font_size(cr, size * 0.7);
  w += advance(cr, s.substr(1));
  cairo_set_font_size(cr, size);
  return w;
}

void draw_text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay,
               double angle) {
  double size = font_size(cr), w = text_width(cr, s);
  // The box runs from 0.8 em above the baseline to 0.15 em below: digits and capitals centre well.
  double x0 = -ax * w, base = -ay * text_height(cr) + 0.8 * size;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  if (!s.empty() && s[0] == kPowerMark) {
    double w10 = advance(cr, "10");
    cairo_move_to(cr, x0, base);
    cairo_show_text(cr, "10");
    cairo_set_font_size(cr, size * 0.7);
    cairo_move_to(cr, x0 + w10, base - 0.45 * size);
    cairo_show_text(cr, s.substr(1).c_str());
  } else {
    cairo_move_to(cr, x0, base);
    cairo_show_text(cr, valid_utf8(s).c_str());
  }
  cairo_restore(cr);
}

std::string fit_text(cairo_t* cr, const std::string& s0, double max_width) {
  std::string s = valid_utf8(s0);
  if (text_width(cr, s) <= max_width) return s;
  while (!s.empty()) {
    size_t n = s.size() - 1;  // drop the last UTF-8 character
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s.resize(n);
    if (text_width(cr, s + "…") <= max_width) break;
  }
  return s + "…";
}

void set_rgb(cairo_t* cr, Rgb c) { cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0); }

void set_series_style(cairo_t* cr, size_t i) {
  set_rgb(cr, palette_color(i));
  cairo_set_line_width(cr, 1.8);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  static const double kDash[] = {6, 4}, kDot[] = {0.5, 3.5};
  switch ((i / 8) % 3) {  // once colours repeat, dashes keep series apart
    case 0: cairo_set_dash(cr, nullptr, 0, 0); break;
    case 1: cairo_set_dash(cr, kDash, 2, 0); break;
    default: cairo_set_dash(cr, kDot, 2, 0); break;
  }
}

// ---------------------------------------------------------------- axes

double Axis::frac(double v) const {
  if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
  return (v - lo) / (hi - lo);
}

double Axis::max_label_width(cairo_t* cr) const {
  double w = 0;
  for (const auto& l : labels) w = std::max(w, text_width(cr, l));
  return w;
}

Axis make_axis(double dmin, double dmax, bool log, int target, bool bar_base) {
  Axis a;
  a.log = log;
  if (!log) {  // the axis spans the nice ticks around the data
    a.ticks = nice_ticks(dmin, dmax, target);
    double step = a.ticks.size() > 1 ? a.ticks[1] - a.ticks[0] : 1;
    for (double t : a.ticks) a.labels.push_back(format_tick(t, step));
    a.lo = a.ticks.front(), a.hi = a.ticks.back();
    return a;
  }
  std::vector<double> decades = log_ticks(bar_base ? dmin * 0.999 : dmin, dmax);
  int stride = decades.size() > 1 ? static_cast<int>(std::lround(std::log10(decades[1] / decades[0]))) : 1;
  auto label = [&](double v) {
    long e = std::lround(std::floor(std::log10(v) + 1e-9));
    bool power = (e < -3 || e > 4) && v == std::pow(10.0, e);  // 10^k; 1000 or 2e-5 stay plain
    a.ticks.push_back(v);
    a.labels.push_back(power ? kPowerMark + std::to_string(e) : format_tick(v, std::pow(10.0, e)));
  };
  for (size_t i = 0; i < decades.size(); ++i) {
    label(decades[i]);
    if (i + 1 == decades.size()) break;
    if (stride > 1) {  // unlabelled decades between labelled ones
      for (int k = 1; k < stride; ++k) a.minor.push_back(decades[i] * std::pow(10.0, k));
    } else if (decades.size() <= 7) {  // 2..9 within each decade; over 1-2 decades label 2 and 5
      for (int m = 2; m <= 9; ++m)
        if (decades.size() <= 3 && (m == 2 || m == 5)) label(decades[i] * m);
        else a.minor.push_back(decades[i] * m);
    }
  }
  a.lo = decades.front(), a.hi = decades.back();
  return a;
}

int tick_target(double length, double spacing) {
  return std::clamp(static_cast<int>(length / spacing), 2, 10);
}

Axis fit_x_axis(cairo_t* cr, double dmin, double dmax, double width) {
  set_font(cr, kTickSize);
  for (int target = tick_target(width, 80);; --target) {
    Axis a = make_axis(dmin, dmax, false, target);
    double spacing = width / std::max<size_t>(1, a.ticks.size() - 1);
    if (target <= 2 || a.max_label_width(cr) + 12 <= spacing) return a;
  }
}

double draw_title(cairo_t* cr, const std::string& title, double width) {
  if (title.empty()) return 18;  // room for half of the top tick label
  set_font(cr, kTitleSize, true);
  cairo_set_source_rgb(cr, 0, 0, 0);
  draw_text(cr, fit_text(cr, title, width - 2 * kPad), width / 2, kPad, 0.5, 0);
  return kPad + text_height(cr) + 14;
}

double left_margin(cairo_t* cr, double tick_label_width, const std::string& ylabel) {
  return kPad + (ylabel.empty() ? 0 : 0.95 * kLabelSize + 8) + tick_label_width + 4 + kTickLen;
}

double bottom_margin(cairo_t* cr, double tick_label_height, const std::string& xlabel) {
  return kTickLen + 4 + tick_label_height + (xlabel.empty() ? 0 : 8 + 0.95 * kLabelSize) + kPad;
}

Rect plot_area(double left, double top, double right, double bottom, double w, double h,
               const std::string& where) {
  // Whole-pixel edges: 1 px lines at +0.5 are crisp and heatmap cells map onto pixels.
  Rect a{std::round(left), std::round(top), 0, 0};
  a.w = std::round(w - right) - a.x;
  a.h = std::round(h - bottom) - a.y;
  if (a.w < 40 || a.h < 40)
    fail(where, ": ", w, "x", h, " px leaves no room for the data next to the labels and legend");
  return a;
}

namespace {
double crisp(double v) { return std::floor(v) + 0.5; }
}  // namespace

void draw_y_axis(cairo_t* cr, const Rect& a, const Axis& ax) {
  cairo_save(cr);
  cairo_set_line_width(cr, 1);
  set_font(cr, kTickSize);
  for (size_t i = 0; i < ax.ticks.size(); ++i) {
    double y = crisp(a.bottom() - ax.frac(ax.ticks[i]) * a.h);
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);  // light grid under the data
    cairo_move_to(cr, a.x, y), cairo_line_to(cr, a.right(), y), cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_move_to(cr, a.x - kTickLen, y), cairo_line_to(cr, a.x, y), cairo_stroke(cr);
    draw_text(cr, ax.labels[i], a.x - kTickLen - 4, y, 1, 0.5);
  }
  for (double t : ax.minor) {
    double y = crisp(a.bottom() - ax.frac(t) * a.h);
    cairo_move_to(cr, a.x - 3, y), cairo_line_to(cr, a.x, y), cairo_stroke(cr);
  }
  cairo_restore(cr);
}

void draw_x_axis(cairo_t* cr, const Rect& a, const Axis& ax) {
  cairo_save(cr);
  cairo_set_line_width(cr, 1);
  set_font(cr, kTickSize);
  for (size_t i = 0; i < ax.ticks.size(); ++i) {
    double x = crisp(a.x + ax.frac(ax.ticks[i]) * a.w);
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, x, a.y), cairo_line_to(cr, x, a.bottom()), cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_move_to(cr, x, a.bottom()), cairo_line_to(cr, x, a.bottom() + kTickLen), cairo_stroke(cr);
    draw_text(cr, ax.labels[i], x, a.bottom() + kTickLen + 4, 0.5, 0);
  }
  cairo_restore(cr);
}

void draw_frame(cairo_t* cr, const Rect& a) {
  cairo_save(cr);
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  cairo_move_to(cr, a.x - 0.5, a.y), cairo_line_to(cr, a.x - 0.5, a.bottom() + 0.5);
  cairo_line_to(cr, a.right(), a.bottom() + 0.5), cairo_stroke(cr);
  cairo_restore(cr);
}

void draw_axis_labels(cairo_t* cr, const Rect& a, const std::string& xlabel,
                      const std::string& ylabel, double height) {
  set_font(cr, kLabelSize);
  cairo_set_source_rgb(cr, 0, 0, 0);
  if (!xlabel.empty()) draw_text(cr, fit_text(cr, xlabel, a.w), a.x + a.w / 2, height - kPad, 0.5, 1);
  if (!ylabel.empty())
    draw_text(cr, fit_text(cr, ylabel, a.h), kPad, a.y + a.h / 2, 0.5, 0, -M_PI / 2);
}

// ---------------------------------------------------------------- category labels

CatLayout layout_categories(cairo_t* cr, const std::vector<std::string>& labels, double slot) {
  set_font(cr, kTickSize);
  CatLayout cl;
  double th = text_height(cr), widest = 0;
  for (const auto& l : labels) widest = std::max(widest, text_width(cr, l));
  if (widest + 6 <= slot) {  // all fit side by side
    cl.max_width = widest, cl.height = th;
    return cl;
  }
  cl.max_width = std::min(widest, 150.0);  // longer labels are abbreviated
  if (slot * 0.7071 >= th + 2) {            // 45 degrees: neighbours are slot * sin 45 apart
    cl.angle = -M_PI / 4;
    cl.height = (cl.max_width + th) * 0.7071;
    cl.overhang_left = cl.max_width * 0.7071 + th * 0.35 - slot / 2;
  } else {  // vertical, every step-th label when even that is crowded
    cl.angle = -M_PI / 2;
    cl.step = static_cast<int>(std::ceil((th + 2) / slot));
    cl.height = cl.max_width;
  }
  return cl;
}

void draw_categories(cairo_t* cr, const std::vector<std::string>& labels, const CatLayout& cl,
                     double x0, double slot, double y) {
  set_font(cr, kTickSize);
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (size_t j = 0; j < labels.size(); j += cl.step) {
    double cx = x0 + (j + 0.5) * slot;
    if (cl.angle == 0) draw_text(cr, labels[j], cx, y, 0.5, 0);
    else  // the end of the text hangs from the tick
      draw_text(cr, fit_text(cr, labels[j], cl.max_width), cx, y, 1, cl.angle < -1 ? 0.5 : 0.2, cl.angle);
  }
}

// ---------------------------------------------------------------- legend

Legend layout_legend(cairo_t* cr, std::vector<LegendItem> items, double avail_h, double max_w) {
  Legend lg;
  lg.items = std::move(items);
  if (lg.items.empty()) return lg;
  set_font(cr, kLegendSize);
  int n = static_cast<int>(lg.items.size());
  lg.rows = std::max(1, static_cast<int>(avail_h / lg.row_h));
  lg.cols = (n + lg.rows - 1) / lg.rows;
  lg.rows = (n + lg.cols - 1) / lg.cols;  // balance the columns
  double widest = 0;
  for (const auto& it : lg.items) widest = std::max(widest, text_width(cr, it.label));
  const double swatch = 28, gap = 14;
  lg.label_w = std::min({widest, 150.0, std::max(30.0, max_w / lg.cols - swatch - gap)});
  lg.col_w = swatch + lg.label_w + gap;
  lg.width = lg.cols * lg.col_w - gap;
  return lg;
}

void draw_legend(cairo_t* cr, const Legend& lg, double x, double y) {
  for (size_t k = 0; k < lg.items.size(); ++k) {
    const LegendItem& it = lg.items[k];
    double ex = x + static_cast<double>(k / lg.rows) * lg.col_w;
    double ey = y + static_cast<double>(k % lg.rows) * lg.row_h + lg.row_h / 2;
    cairo_save(cr);
    if (it.bar) {
      set_rgb(cr, palette_color(it.style));
      cairo_rectangle(cr, ex + 4, ey - 6, 14, 12);
      cairo_fill(cr);
    } else {
      set_series_style(cr, it.style);
      cairo_move_to(cr, ex, ey), cairo_line_to(cr, ex + 22, ey), cairo_stroke(cr);
      if (it.marker) cairo_arc(cr, ex + 11, ey, 3, 0, 2 * M_PI), cairo_fill(cr);
    }
    cairo_restore(cr);
    set_font(cr, kLegendSize);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, fit_text(cr, it.label, lg.label_w), ex + 28, ey, 0, 0.5);
  }
}

}  // namespace ikv::plot::detail
