#include "io/escape.h"

namespace ikv::io {

std::string escape_html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string escape_md(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '|': out += "\\|"; break;  // a cell border
      case '`': out += "\\`"; break;  // would open a code span across cells
      case '\n': case '\r': out += ' '; break;  // a line break ends the table row
      default: out += c;
    }
  }
  return escape_html(out);  // Markdown renderers pass raw HTML through
}

}  // namespace ikv::io
