// Plots: tick maths, colours, and the pixels / SVG text the renderers actually produce.
#include <cairo.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "plot/plot.h"
#include "io/error.h"

using namespace ikv::plot;
namespace fs = std::filesystem;

namespace {

// One scratch directory per test run, removed when the binary exits.
fs::path scratch_dir() {
  struct Dir {
    fs::path path = fs::temp_directory_path() / ("ikv_test_plot_" + std::to_string(getpid()));
    Dir() { fs::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

struct Image {
  int w = 0, h = 0;
  std::vector<uint32_t> px;  // 0x00RRGGBB
  Rgb at(int x, int y) const {
    uint32_t v = px[size_t(y) * w + x];
    return {uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  }
};

Image read_png(const fs::path& p) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(p.c_str());
  REQUIRE(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
  Image img;
  img.w = cairo_image_surface_get_width(s), img.h = cairo_image_surface_get_height(s);
  int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < img.h; ++y)
    for (int x = 0; x < img.w; ++x)
      img.px.push_back(reinterpret_cast<const uint32_t*>(data + size_t(y) * stride)[x] & 0xFFFFFF);
  cairo_surface_destroy(s);
  return img;
}

bool near(Rgb a, Rgb b, int tol) {
  for (int k = 0; k < 3; ++k)
    if (std::abs(int(a[k]) - int(b[k])) > tol) return false;
  return true;
}
const Rgb kWhite{255, 255, 255};

// The message of the ikv::Error f throws, or "" when it does not throw.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ikv::Error& e) {
    return e.what();
  }
  return "";
}

void check_ticks(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
}

}  // namespace

TEST_CASE("plot nice ticks use 1-2-5 steps and cover the range") {
  check_ticks(nice_ticks(0, 0.97), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  CHECK(nice_ticks(0, 0.97)[3] == 0.6);  // exactly, so the label reads "0.6"
  check_ticks(nice_ticks(0, 500), {0, 100, 200, 300, 400, 500});
  check_ticks(nice_ticks(-3.7, 12), {-5, 0, 5, 10, 15});
  check_ticks(nice_ticks(-3.7, 12, 8), {-4, -2, 0, 2, 4, 6, 8, 10, 12});
  check_ticks(nice_ticks(0, 10, 5), {0, 2, 4, 6, 8, 10});
  auto c = nice_ticks(5, 5);  // a constant: widened, value inside
  CHECK(c.front() < 5);
  CHECK(c.back() > 5);
  auto z = nice_ticks(0, 0);
  CHECK(z.front() < 0);
  CHECK(z.back() > 0);
  CHECK(nice_ticks(1e-5, 4.2e-5).size() >= 3);
  CHECK_THROWS_AS(nice_ticks(0, NAN), ikv::Error);
}

TEST_CASE("plot log ticks are decades") {
  check_ticks(log_ticks(3, 457), {1, 10, 100, 1000});
  check_ticks(log_ticks(10, 100), {10, 100});
  check_ticks(log_ticks(3, 8), {1, 10});
  check_ticks(log_ticks(0.002, 0.5), {0.001, 0.01, 0.1, 1});
  auto wide = log_ticks(1e-6, 1e6);  // 12 decades: every other decade labelled
  CHECK(wide.size() == 7);
  CHECK(wide.front() == doctest::Approx(1e-6));
  CHECK(wide[1] == doctest::Approx(1e-4));
  CHECK_THROWS_AS(log_ticks(0, 10), ikv::Error);
}

TEST_CASE("plot tick labels are short") {
  CHECK(format_tick(0.6000000001, 0.2) == "0.6");
  CHECK(format_tick(0, 0.2) == "0");
  CHECK(format_tick(400, 100) == "400");
  CHECK(format_tick(0.05, 0.05) == "0.05");
  CHECK(format_tick(-4, 2) == "-4");
  CHECK(format_tick(0.0015, 0.0005) == "0.0015");
  CHECK(format_tick(2e-5, 1e-5) == "2e-5");
  CHECK(format_tick(1.5e6, 5e5) == "1.5e6");
  CHECK(format_tick(1e6, 5e5) == "1e6");
}

TEST_CASE("plot colours") {
  CHECK(colormap(0) == Rgb{68, 1, 84});
  CHECK(colormap(1) == Rgb{253, 231, 37});
  CHECK(colormap(0.5) == Rgb{33, 145, 140});
  CHECK(colormap(7) == colormap(1));
  CHECK(colormap(-1) == colormap(0));
  CHECK(palette_color(0) == Rgb{0, 114, 178});
  CHECK(palette_color(8) == palette_color(0));
  CHECK(palette_color(1) != palette_color(0));
}

TEST_CASE("plot bar chart PNG: bars are drawn to scale in their colour, background white") {
  fs::path path = scratch_dir() / "bars.png";
  BarPlot p{"Bars", "token", "value", {"a", "b", "c", "d", "e"}, {{"", {}, {1, 2, 4, 8, 10}}}};
  save_plot(p, path, 640, 400);
  std::string bytes = slurp(path);
  REQUIRE(bytes.size() > 8);
  CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK_FALSE(fs::exists(path.string() + ".tmp"));

  Image img = read_png(path);
  REQUIRE(img.w == 640);
  REQUIRE(img.h == 400);
  // Per column, the number of pixels in the bar colour; bars are runs of such columns.
  std::vector<int> count(img.w, 0);
  for (int x = 0; x < img.w; ++x)
    for (int y = 0; y < img.h; ++y) count[x] += near(img.at(x, y), palette_color(0), 2);
  std::vector<int> heights, starts, ends;
  for (int x = 0; x < img.w; ++x) {
    if (count[x] == 0) continue;
    int h = 0;
    starts.push_back(x);
    for (; x < img.w && count[x] > 0; ++x) h = std::max(h, count[x]);
    ends.push_back(x);
    heights.push_back(h);
  }
  REQUIRE(heights.size() == 5);
  CHECK(heights[4] > img.h / 2);
  const double values[] = {1, 2, 4, 8, 10};
  for (int j = 0; j < 5; ++j) CHECK(std::abs(heights[j] - heights[4] * values[j] / 10) <= 2);
  // The max bar (10) reaches the top tick (10): the grid line there, seen in the gap between
  // the last two bars, is level with the bar's top.
  int mid = (starts[4] + ends[4]) / 2, top = 0;
  while (!near(img.at(mid, top), palette_color(0), 2)) ++top;
  int gap = (ends[3] + starts[4]) / 2;
  bool grid_at_top = false;
  for (int y = top - 1; y <= top + 1; ++y) grid_at_top |= near(img.at(gap, y), Rgb{224, 224, 224}, 3);
  CHECK(grid_at_top);
  // ... and every bar stands on the x axis line (dark) at the bottom.
  for (int j = 0; j < 5; ++j) {
    int x = (starts[j] + ends[j]) / 2, y = img.h - 1;
    while (!near(img.at(x, y), palette_color(0), 2)) --y;
    CHECK((img.at(x, y + 1)[0] < 100 || img.at(x, y + 2)[0] < 100));
  }
  for (auto [x, y] : {std::pair{1, 1}, {img.w - 2, 1}, {img.w - 2, img.h - 2}, {1, img.h - 2}})
    CHECK(img.at(x, y) == kWhite);
  // Above the shortest bar there is background (white or the light grid), never bar colour.
  int x0 = 0;
  while (count[x0] == 0) ++x0;
  int white = 0;
  for (int y = 0; y < img.h; ++y) white += img.at(x0 + 3, y) == kWhite;
  CHECK(white > img.h / 2);
}

TEST_CASE("plot bar chart PNG: an interval is a dark whisker through the bar, to scale") {
  fs::path path = scratch_dir() / "whisker.png";
  // One bar of 5 with the interval [2, 9]; a second group widens nothing (no interval).
  BarPlot p{"Whisker", "", "", {"a"}, {{"", {}, {5}, {2}, {9}}}};
  save_plot(p, path, 400, 400);
  Image img = read_png(path);
  int left = img.w, right = 0, bar_top = img.h;
  for (int x = 0; x < img.w; ++x)
    for (int y = 0; y < img.h; ++y)
      if (near(img.at(x, y), palette_color(0), 2)) left = std::min(left, x), right = std::max(right, x), bar_top = std::min(bar_top, y);
  REQUIRE(right > left);
  const int mid = (left + right) / 2;
  // The whisker rises above the bar (hi 9 > value 5): a dark run up the bar's centre column.
  int dark_top = bar_top;
  while (dark_top > 0 && img.at(mid, dark_top - 1)[0] < 120) --dark_top;
  CHECK(bar_top - dark_top > 10);
  // Scale: from the bar's top (5) the whisker's top (9) is 4 units up; the bar is 5 units tall
  // above the axis (0 is the bottom). So (bar_top - dark_top) / 4 ≈ bar height / 5.
  int bottom = bar_top;
  while (bottom < img.h && near(img.at(left + 5, bottom), palette_color(0), 2)) ++bottom;  // clear of the caps
  const double unit = (bottom - bar_top) / 5.0;
  CHECK(std::abs((bar_top - dark_top) - 4 * unit) <= 3);
  // Bounds must come one per value.
  BarPlot bad{"Bad", "", "", {"a", "b"}, {{"g", {}, {1, 2}, {0}, {3}}}};
  CHECK_THROWS_WITH_AS(save_plot(bad, scratch_dir() / "bad.png"), doctest::Contains("interval bounds"), ikv::Error);
}

TEST_CASE("plot heatmap PNG: the max cell gets the colormap's top colour, min cell the bottom") {
  fs::path path = scratch_dir() / "heat.png";
  Heatmap hm{"Heat", "col", "row", 3, 4, {}, {}, {}};
  for (int i = 0; i < 12; ++i) hm.values.push_back(i);
  hm.values[5] = NAN;  // row 1, col 1: a grey gap
  save_plot(hm, path, 640, 480);
  Image img = read_png(path);
  REQUIRE(img.w == 640);
  REQUIRE(img.h == 480);
  auto centroid = [&](Rgb c, int& n) {
    double sx = 0, sy = 0;
    n = 0;
    for (int y = 0; y < img.h; ++y)
      for (int x = 0; x < img.w; ++x)
        if (img.at(x, y) == c) sx += x, sy += y, ++n;
    return std::pair{sx / std::max(n, 1), sy / std::max(n, 1)};
  };
  int n_top = 0, n_bottom = 0, n_grey = 0;
  auto [tx, ty] = centroid(colormap(1), n_top);  // value 11: last row, last column
  auto [bx, by] = centroid(colormap(0), n_bottom);  // value 0: first row, first column
  centroid(Rgb{215, 215, 215}, n_grey);
  CHECK(n_top > 5000);  // a whole cell, not just the colour bar's end
  CHECK(std::abs(n_top - n_bottom) < n_top / 10);
  CHECK(n_grey > 5000);
  CHECK(tx > bx + 200);
  CHECK(ty > by + 150);
  CHECK(img.at(1, 1) == kWhite);
  CHECK(img.at(img.w - 2, img.h - 2) == kWhite);
}

TEST_CASE("plot line PNG: the line rises left to right and NaN leaves a gap") {
  fs::path path = scratch_dir() / "line.png";
  Series s{"", {}, {}};
  for (int i = 0; i <= 10; ++i) s.x.push_back(i), s.y.push_back(i);
  LinePlot p{"Line", "x", "y", {s}, false, false};
  save_plot(p, path, 640, 400);
  Image img = read_png(path);
  auto colored = [&](int x) {
    std::vector<int> ys;
    for (int y = 0; y < img.h; ++y)
      if (near(img.at(x, y), palette_color(0), 60)) ys.push_back(y);
    return ys;
  };
  int xmin = img.w, xmax = -1;
  for (int x = 0; x < img.w; ++x)
    if (!colored(x).empty()) xmin = std::min(xmin, x), xmax = std::max(xmax, x);
  REQUIRE(xmax > xmin + 300);
  CHECK(colored(xmin + 2).front() > colored(xmax - 2).front() + 200);

  p.series[0].y[5] = NAN;
  save_plot(p, path, 640, 400);
  img = read_png(path);
  CHECK(colored((xmin + xmax) / 2).empty());
  CHECK_FALSE(colored(xmin + (xmax - xmin) / 4).empty());
}

TEST_CASE("plot SVG: a document with the requested size, identical to the saved file") {
  LinePlot p{"Loss", "step", "loss", {{"run", {0, 1, 2}, {3, 2, 1.5}}}};
  std::string svg = plot_svg(p, 640, 400);
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find("width=\"640px\"") != std::string::npos);
  CHECK(svg.find("height=\"400px\"") != std::string::npos);
  CHECK(svg.find("<path") != std::string::npos);
  CHECK(svg.find("</svg>") != std::string::npos);
  fs::path path = scratch_dir() / "loss.svg";
  save_plot(p, path, 640, 400);
  CHECK(slurp(path) == svg);
  // ids are prefixed per plot, so two plots inlined in one page keep their own glyphs
  CHECK(svg.find("id=\"glyph") == std::string::npos);
  std::string other = plot_svg(LinePlot{"Other", "", "", {{"b", {0, 1}, {1, 0}}}}, 640, 400);
  auto prefix = [](const std::string& s) {
    auto p = s.find("id=\"") + 4;
    return s.substr(p, s.find('-', p) - p);
  };
  CHECK(prefix(svg) != prefix(other));
  // Large heatmaps stay one embedded image, not a rectangle per cell.
  Heatmap big{"attn", "", "", 32, 2048, std::vector<double>(32 * 2048, 0.0), {}, {}};
  for (size_t i = 0; i < big.values.size(); ++i) big.values[i] = std::sin(i * 0.01);
  CHECK(plot_svg(big).size() < 2'000'000);
}

TEST_CASE("plot PNG base64 for data URIs") {
  BarPlot p{"", "", "", {"x"}, {{"g", {}, {1}}}};
  std::string b64 = plot_png_base64(p, 200, 150);
  CHECK(b64.rfind("iVBORw0KGgo", 0) == 0);  // base64 of the PNG signature
  CHECK(b64.size() % 4 == 0);
}

TEST_CASE("plot errors name the path and the plot") {
  fs::path dir = scratch_dir();
  std::string png = (dir / "bad.png").string();
  LinePlot mismatch{"Mismatch", "", "", {{"s", {1, 2, 3}, {1, 2}}}};
  std::string e = error_of([&] { save_plot(mismatch, png); });
  CHECK(e.find(png) != std::string::npos);
  CHECK(e.find("Mismatch") != std::string::npos);
  CHECK(e.find("3 x values but 2 y values") != std::string::npos);
  CHECK(error_of([&] { plot_svg(mismatch); }).find("Mismatch") != std::string::npos);

  LinePlot empty;
  empty.title = "Empty";
  e = error_of([&] { save_plot(empty, png); });
  CHECK(e.find("Empty") != std::string::npos);
  CHECK(e.find("no series") != std::string::npos);
  LinePlot nan_only{"NaNs", "", "", {{"s", {1, 2}, {NAN, NAN}}}};
  CHECK(error_of([&] { save_plot(nan_only, png); }).find("no finite values") != std::string::npos);
  LinePlot negative_log{"Neg", "", "", {{"s", {1, 2}, {-1, 0}}}, true};
  CHECK(error_of([&] { plot_svg(negative_log); }).find("log axis") != std::string::npos);

  std::string jpg = (dir / "plot.jpg").string();
  LinePlot ok{"Fine", "", "", {{"s", {1, 2}, {1, 2}}}};
  e = error_of([&] { save_plot(ok, jpg); });
  CHECK(e.find(jpg) != std::string::npos);
  CHECK(e.find("unknown plot format") != std::string::npos);
  CHECK_FALSE(fs::exists(jpg));

  e = error_of([&] { save_plot(ok, "/nonexistent-ikv-dir/plot.png"); });
  CHECK(e.find("/nonexistent-ikv-dir/plot.png") != std::string::npos);

  BarPlot bars{"Bars", "", "", {"a", "b"}, {{"g", {}, {1}}}};
  CHECK(error_of([&] { save_plot(bars, png); }).find("1 values for 2 categories") != std::string::npos);
  BarPlot no_cats;
  no_cats.title = "NoCats";
  CHECK(error_of([&] { save_plot(no_cats, png); }).find("NoCats") != std::string::npos);
  Heatmap hm{"HM", "", "", 2, 2, {1, 2, 3}, {}, {}};
  CHECK(error_of([&] { save_plot(hm, png); }).find("3 values for 2x2 cells") != std::string::npos);
  hm.values.push_back(4);
  hm.row_labels = {"only one"};
  CHECK(error_of([&] { save_plot(hm, png); }).find("1 row labels for 2 rows") != std::string::npos);
  CHECK(error_of([&] { save_plot(ok, png, 10, 10); }).find("10x10") != std::string::npos);
  CHECK_FALSE(fs::exists(png));
  CHECK_FALSE(fs::exists(png + ".tmp"));
}

TEST_CASE("plot edge cases render: single point, constant, log gaps, odd labels") {
  fs::path dir = scratch_dir();
  CHECK_NOTHROW(save_plot(LinePlot{"one point", "", "", {{"p", {3}, {7}}}}, (dir / "a.png").string()));
  CHECK_NOTHROW(save_plot(LinePlot{"const", "", "", {{"c", {0, 1, 2}, {0, 0, 0}}}}, (dir / "b.png").string()));
  CHECK_NOTHROW(save_plot(LinePlot{"log", "", "", {{"l", {0, 1, 2, 3}, {1, -1, NAN, 1e9}}}, true},
                          (dir / "c.svg").string()));
  BarPlot bars{"odd \xff labels", "", "", {"<s>", "\xe2\x96\x81the", "\xe2\x96", ""}, {{"g", {}, {0, 5, -3, NAN}}}};
  CHECK_NOTHROW(save_plot(bars, (dir / "d.png").string()));
  bars.log_y = true;
  CHECK_NOTHROW(save_plot(bars, (dir / "e.png").string()));
  CHECK_NOTHROW(save_plot(Heatmap{"1x1", "", "", 1, 1, {0.5}, {}, {}}, (dir / "f.png").string()));
  CHECK_NOTHROW(save_plot(Heatmap{"flat", "", "", 2, 3, std::vector<double>(6, 2.0), {}, {}},
                          (dir / "g.svg").string()));
  // Overwriting an existing plot works and leaves no temporary behind.
  CHECK_NOTHROW(save_plot(LinePlot{"again", "", "", {{"p", {3}, {7}}}}, (dir / "a.png").string()));
  CHECK_FALSE(fs::exists(dir / "a.png.tmp"));
}

// Realistic figures for eyeballing: written to $TMPDIR/ikv_plot_examples/.
TEST_CASE("plot examples") {
  fs::path dir = fs::temp_directory_path() / "ikv_plot_examples";
  fs::create_directories(dir);

  BarPlot peaks{"Peak |activation| per token (layer 2)", "token", "max |x|", {}, {{"", {}, {}}}, true};
  const char* words[] = {"<s>", "▁The", "▁quick", "▁brown", "▁fox", "▁jumps", "▁over", "▁the", "▁lazy", "▁dog", "."};
  for (int i = 0; i < 40; ++i) {
    peaks.categories.push_back(words[i % 11]);
    peaks.groups[0].y.push_back(i == 0 ? 1850 : i % 11 == 10 ? 240 : 4 + 9 * std::fabs(std::sin(i * 1.7)));
  }
  save_plot(peaks, (dir / "peaks.png").string());

  Heatmap attn{"Attention (layer 0, head 3)", "key position", "query position", 48, 48, {}, {}, {}};
  for (int q = 0; q < 48; ++q)
    for (int k = 0; k < 48; ++k)
      attn.values.push_back(k > q ? NAN : k == 0 ? 0.6 : k == q ? 0.25 : 0.15 / (q + 1));
  save_plot(attn, (dir / "attention.png").string());

  Heatmap layers{"Mean attention to [BOS]", "position", "layer", 32, 512, {}, {}, {}};
  for (int l = 0; l < 32; ++l)
    for (int p = 0; p < 512; ++p) layers.values.push_back(std::tanh(l / 8.0) * (0.5 + 0.5 * std::cos(p / 40.0)));
  save_plot(layers, (dir / "layers.png").string());

  LinePlot mse{"KV MSE vs IntactKV size", "IntactKV tokens", "MSE", {}, true};
  for (int l = 0; l < 12; ++l) {
    Series s{"layer " + std::to_string(l), {}, {}};
    for (int n : {0, 1, 2, 4, 8, 16, 32, 64}) s.x.push_back(n), s.y.push_back(1e-3 * (l + 1) / (1 + n * (l + 1) * 0.3));
    mse.series.push_back(s);
  }
  save_plot(mse, (dir / "mse.png").string());

  LinePlot loss{"Calibration loss", "step", "loss", {}, false, true};
  for (int r = 0; r < 2; ++r) {
    Series s{r ? "lr 1e-4" : "lr 3e-4", {}, {}};
    for (int i = 0; i < 400; ++i) s.x.push_back(i), s.y.push_back(0.08 + 0.9 * std::exp(-i / (60.0 + 80 * r)) + 0.01 * std::sin(i * 0.7));
    loss.series.push_back(s);
  }
  save_plot(loss, (dir / "loss.png").string());
  save_plot(loss, (dir / "loss.svg").string());

  BarPlot ppl{"WikiText-2 perplexity (lower is better)", "method", "perplexity",
              {"FP16", "RTN W4A16", "AWQ W4A16", "RTN W4A16 + IntactKV", "AWQ W4A16 + IntactKV"}, {}};
  ppl.groups = {{"LLaMA-7B", {}, {5.68, 6.29, 6.08, 6.11, 5.99}},
                {"LLaMA-13B", {}, {5.09, 5.53, 5.34, 5.38, 5.27}},
                {"LLaMA-2-7B", {}, {5.47, 6.11, 6.15, 5.97, 5.93}}};
  save_plot(ppl, (dir / "ppl.png").string());

  Heatmap tokens{"Attention received per token", "token", "layer", 16, 24, {}, {}, {}};
  for (int l = 0; l < 16; ++l) tokens.row_labels.push_back("layer " + std::to_string(l));
  for (int t = 0; t < 24; ++t) tokens.col_labels.push_back(words[t % 11]);
  for (int l = 0; l < 16; ++l)
    for (int t = 0; t < 24; ++t) tokens.values.push_back(t == 0 ? 0.3 + l * 0.04 : t % 11 == 10 ? 0.2 : 0.02 * (1 + std::sin(l + t)));
  save_plot(tokens, (dir / "tokens.png").string());

  LinePlot edge{"Edge cases", "x", "y", {{"single point", {5}, {2}}, {"constant", {0, 10}, {1, 1}},
                                         {"NaN gap", {0, 2, 4, 6, 8, 10}, {0, 0.5, NAN, 1.5, 2, 2.5}}}};
  save_plot(edge, (dir / "edge.png").string());
  CHECK(fs::exists(dir / "ppl.png"));
}
