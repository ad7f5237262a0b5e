// Plot output (PNG / SVG through Cairo, atomic file writes, base64), tick and colour helpers.
#include "plot/plot.h"

#include <cairo-svg.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "plot/plot_internal.h"
#include "io/error.h"

namespace ikv::plot {

// ---------------------------------------------------------------- ticks and labels

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) fail("nice_ticks: range [", lo, ", ", hi, "] is not finite");
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo <= 1e-12 * std::max(1.0, std::fabs(lo))) {  // one value: widen so it sits mid-axis
    double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  double raw = (hi - lo) / std::max(target, 1);
  int e = static_cast<int>(std::floor(std::log10(raw)));
  double m = raw / std::pow(10.0, e);
  int mult = m <= 1 + 1e-9 ? 1 : m <= 2 + 1e-9 ? 2 : m <= 5 + 1e-9 ? 5 : 10;
  double step = mult * std::pow(10.0, e);
  auto k0 = static_cast<long long>(std::floor(lo / step + 1e-9));
  auto k1 = static_cast<long long>(std::ceil(hi / step - 1e-9));
  std::vector<double> ticks;
  // k * mult / 10^-e (rather than k * step) gives correctly rounded values: 0.6, not 0.6000000001.
  for (long long k = k0; k <= k1; ++k)
    ticks.push_back(e < 0 ? double(k * mult) / std::pow(10.0, -e) : double(k * mult) * std::pow(10.0, e));
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !(hi > 0) || !std::isfinite(lo) || !std::isfinite(hi))
    fail("log_ticks: range [", lo, ", ", hi, "] is not positive and finite");
  if (lo > hi) std::swap(lo, hi);
  int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (e1 == e0) ++e1;
  int stride = std::max(1, (e1 - e0 + 7) / 8);  // about 8 labels at most
  e0 = static_cast<int>(std::floor(double(e0) / stride)) * stride;
  e1 = static_cast<int>(std::ceil(double(e1) / stride)) * stride;
  std::vector<double> ticks;
  for (int e = e0; e <= e1; e += stride) ticks.push_back(std::pow(10.0, e));
  return ticks;
}

std::string format_tick(double value, double step) {
  if (value == 0) return "0";
  char buf[64];
  step = std::fabs(step);
  if (step > 0 && (step < 1e-4 || step >= 1e5)) {  // scientific, as short as the step allows
    int ev = static_cast<int>(std::floor(std::log10(std::fabs(value)) + 1e-9));
    int es = static_cast<int>(std::floor(std::log10(step) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(ev - es, 0, 6), value);
    std::string s = buf, mant = s.substr(0, s.find('e'));
    if (mant.find('.') != std::string::npos) {  // 1.50 -> 1.5, 1.0 -> 1
      mant.erase(mant.find_last_not_of('0') + 1);
      if (mant.back() == '.') mant.pop_back();
    }
    return mant + "e" + std::to_string(std::stoi(s.substr(s.find('e') + 1)));
  }
  int decimals = step > 0 ? std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 10) : 3;
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

// ---------------------------------------------------------------- colours

Rgb palette_color(size_t index) {
  // Okabe-Ito, ordered so the first few are the most distinct; yellow last (weak on white).
  static const Rgb kPalette[] = {{0, 114, 178},  {230, 159, 0},   {0, 158, 115}, {213, 94, 0},
                                 {86, 180, 233}, {204, 121, 167}, {0, 0, 0},     {240, 228, 66}};
  return kPalette[index % 8];
}

Rgb colormap(double t) {
  // viridis sampled at 0, 0.1, ..., 1; linear interpolation in between.
  static const Rgb kViridis[] = {{68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
                                 {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
                                 {122, 209, 81}, {189, 223, 38}, {253, 231, 37}};
  t = std::isnan(t) ? 0 : std::clamp(t, 0.0, 1.0) * 10;
  int i = std::min(static_cast<int>(t), 9);
  double f = t - i;
  Rgb c;
  for (int k = 0; k < 3; ++k)
    c[k] = static_cast<uint8_t>(std::lround(kViridis[i][k] + f * (kViridis[i + 1][k] - kViridis[i][k])));
  return c;
}


// ---------------------------------------------------------------- output

namespace {

enum class Format { png, svg };

cairo_status_t append(void* out, const unsigned char* data, unsigned int n) {
  static_cast<std::string*>(out)->append(reinterpret_cast<const char*>(data), n);
  return CAIRO_STATUS_SUCCESS;
}

// Cairo names SVG elements with counters (glyph0-1, clip1, and surfaceN from a process-wide
// counter), so the same plot would differ between calls, and two plots inlined into one HTML
// page would borrow each other's glyphs. Rename every id to its order of first appearance,
// prefixed with a hash of the renamed document: deterministic and distinct per plot.
std::string unique_svg_ids(const std::string& svg) {
  static const std::string kRefs[] = {"id=\"", "href=\"#", "url(#"};
  size_t next[3] = {svg.find(kRefs[0]), svg.find(kRefs[1]), svg.find(kRefs[2])};
  std::map<std::string, size_t> names;
  std::string out;
  out.reserve(svg.size() + svg.size() / 16);
  for (size_t i = 0;;) {
    size_t best = std::string::npos, len = 0;
    for (int k = 0; k < 3; ++k) {  // the nearest reference of any kind (positions are cached)
      if (next[k] != std::string::npos && next[k] < i) next[k] = svg.find(kRefs[k], i);
      if (next[k] < best) best = next[k], len = kRefs[k].size();
    }
    size_t end = best == std::string::npos ? best : svg.find_first_of("\")", best + len);
    if (end == std::string::npos) {
      out.append(svg, i);
      break;
    }
    out.append(svg, i, best + len - i);
    out += '\x01' + std::to_string(names.emplace(svg.substr(best + len, end - best - len), names.size()).first->second);
    i = end;
  }
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : out) h = (h ^ c) * 16777619u;
  char prefix[16];
  std::snprintf(prefix, sizeof prefix, "p%08x-", h);
  std::string result;
  result.reserve(out.size() + names.size() * 16);
  for (char c : out) c == '\x01' ? result += prefix : result += c;
  return result;
}

template <typename Plot>
std::string render(const Plot& p, Format fmt, int w, int h, const std::string& where) {
  if (w < 100 || h < 100 || w > 20000 || h > 20000)
    fail(where, ": size ", w, "x", h, " px is outside 100..20000");
  std::string out;
  cairo_surface_t* s = fmt == Format::svg ? cairo_svg_surface_create_for_stream(append, &out, w, h)
                                          : cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (fmt == Format::svg) cairo_svg_surface_set_document_unit(s, CAIRO_SVG_UNIT_PX);
  cairo_t* cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  try {
    detail::draw_plot(cr, p, w, h, where);
  } catch (...) {
    cairo_destroy(cr);
    cairo_surface_destroy(s);
    throw;
  }
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  if (st == CAIRO_STATUS_SUCCESS && fmt == Format::png) st = cairo_surface_write_to_png_stream(s, append, &out);
  cairo_surface_finish(s);  // flushes the SVG
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS) fail(where, ": drawing failed: ", cairo_status_to_string(st));
  return fmt == Format::svg ? unique_svg_ids(out) : out;
}

std::string describe(const std::string& title) {
  return title.empty() ? "untitled plot" : "plot '" + title + "'";
}

Format format_of(const std::string& path, const std::string& title) {
  auto dot = path.rfind('.'), slash = path.rfind('/');
  std::string ext = dot == std::string::npos || (slash != std::string::npos && dot < slash) ? "" : path.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".png") return Format::png;
  if (ext == ".svg") return Format::svg;
  fail(path, ": ", describe(title), ": unknown plot format '", ext, "' (expected .png or .svg)");
}

// Write to path.tmp, then rename: readers never see a half-written plot.
void write_atomic(const std::string& path, const std::string& where, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(where, ": cannot write ", tmp, ": ", std::strerror(errno));
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  int err = errno;
  if (std::fclose(f) != 0 && ok) ok = false, err = errno;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(where, ": cannot write the file: ", std::strerror(err));
  }
}

std::string base64(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[v >> 18], out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

template <typename Plot>
void save(const Plot& p, const std::string& path, int w, int h) {
  Format fmt = format_of(path, p.title);
  std::string where = path + ": " + describe(p.title);
  write_atomic(path, where, render(p, fmt, w, h, where));
}

}  // namespace

void save_plot(const LinePlot& p, const std::string& path, int w, int h) { save(p, path, w, h); }
void save_plot(const BarPlot& p, const std::string& path, int w, int h) { save(p, path, w, h); }
void save_plot(const Heatmap& p, const std::string& path, int w, int h) { save(p, path, w, h); }

std::string plot_svg(const LinePlot& p, int w, int h) { return render(p, Format::svg, w, h, describe(p.title)); }
std::string plot_svg(const BarPlot& p, int w, int h) { return render(p, Format::svg, w, h, describe(p.title)); }
std::string plot_svg(const Heatmap& p, int w, int h) { return render(p, Format::svg, w, h, describe(p.title)); }

std::string plot_png_base64(const LinePlot& p, int w, int h) {
  return base64(render(p, Format::png, w, h, describe(p.title)));
}
std::string plot_png_base64(const BarPlot& p, int w, int h) {
  return base64(render(p, Format::png, w, h, describe(p.title)));
}
std::string plot_png_base64(const Heatmap& p, int w, int h) {
  return base64(render(p, Format::png, w, h, describe(p.title)));
}

}  // namespace ikv::plot
