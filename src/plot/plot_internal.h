// Internals of the plot module, not a public header: shared drawing pieces (plot_draw.cc) and
// one drawer per plot kind (plot_line.cc, plot_heatmap.cc), called by plot.cc. All coordinates are Cairo user units = output pixels.
#pragma once
#include <cairo.h>

#include <string>
#include <vector>

#include "plot/plot.h"

namespace ikv::plot::detail {

struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
};

// Font sizes (px) and spacing used everywhere, so all plot kinds look alike.
constexpr double kTitleSize = 15, kLabelSize = 13, kTickSize = 11, kLegendSize = 12;
constexpr double kTickLen = 5, kPad = 10;

// --- Text (Cairo toy API). A label "10^k" is drawn as 10 with a superscript k. ---
void set_font(cairo_t* cr, double size, bool bold = false);
double text_width(cairo_t* cr, const std::string& s);
// Height of the box draw_text aligns against (cap height + a little descent) for the current font.
double text_height(cairo_t* cr);
// Draws s so that the point (ax, ay) of its box (0..1 fractions of width, height; 0,0 = top-left)
// lands on (x, y), after rotating the text by angle (radians, counter-clockwise is negative).
void draw_text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay,
               double angle = 0);
// s abbreviated with "…" to fit max_width (UTF-8 aware).
std::string fit_text(cairo_t* cr, const std::string& s, double max_width);

void set_rgb(cairo_t* cr, Rgb c);
// Colour, width and dash of series i: palette colour, dashes once the palette repeats.
void set_series_style(cairo_t* cr, size_t i);

// --- Axes ---
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks, minor;  // labelled ticks, unlabelled ticks
  std::vector<std::string> labels;   // one per tick
  double frac(double v) const;       // 0 at lo, 1 at hi
  double max_label_width(cairo_t* cr) const;
};
// Axis over data [dmin, dmax] with about `target` intervals. bar_base: on a log axis keep the
// smallest value strictly above the bottom so its bar has height.
Axis make_axis(double dmin, double dmax, bool log, int target, bool bar_base = false);
// Tick count for an axis of `length` px with about `spacing` px between ticks.
int tick_target(double length, double spacing);
// The widest-spaced linear axis whose tick labels fit side by side in `width` px.
Axis fit_x_axis(cairo_t* cr, double dmin, double dmax, double width);

double draw_title(cairo_t* cr, const std::string& title, double width);  // returns plot top y
double left_margin(cairo_t* cr, double tick_label_width, const std::string& ylabel);
double bottom_margin(cairo_t* cr, double tick_label_height, const std::string& xlabel);
Rect plot_area(double left, double top, double right, double bottom, double w, double h,
               const std::string& where);
void draw_y_axis(cairo_t* cr, const Rect& a, const Axis& ax);         // grid, ticks, labels
void draw_x_axis(cairo_t* cr, const Rect& a, const Axis& ax);         // grid, ticks, labels
void draw_frame(cairo_t* cr, const Rect& a);                          // left + bottom spines
void draw_axis_labels(cairo_t* cr, const Rect& a, const std::string& xlabel,
                      const std::string& ylabel, double height);

// --- Category labels under an axis (bars, heatmap columns) ---
struct CatLayout {
  double angle = 0;  // 0, -45 or -90 degrees (in radians)
  int step = 1;      // label every step-th category when even vertical text is crowded
  double max_width = 0, height = 0, overhang_left = 0;
};
CatLayout layout_categories(cairo_t* cr, const std::vector<std::string>& labels, double slot);
// Labels centred on x0 + (j + 0.5) * slot, hanging below y.
void draw_categories(cairo_t* cr, const std::vector<std::string>& labels, const CatLayout& cl,
                     double x0, double slot, double y);

// --- Legend, placed right of the plot area so it never covers data ---
struct LegendItem {
  std::string label;
  size_t style;  // series / group index -> colour
  bool bar;      // filled square swatch instead of a line
  bool marker;
};
struct Legend {
  std::vector<LegendItem> items;
  int rows = 0, cols = 0;
  double col_w = 0, row_h = 18, label_w = 0, width = 0;
};
Legend layout_legend(cairo_t* cr, std::vector<LegendItem> items, double avail_h, double max_w);
void draw_legend(cairo_t* cr, const Legend& lg, double x, double y);

// --- One drawer per plot kind; each validates first and throws ikv::Error naming `where`. ---
void draw_plot(cairo_t* cr, const LinePlot& p, double w, double h, const std::string& where);
void draw_plot(cairo_t* cr, const BarPlot& p, double w, double h, const std::string& where);
void draw_plot(cairo_t* cr, const Heatmap& p, double w, double h, const std::string& where);

}  // namespace ikv::plot::detail
