// Every user-supplied string (model names and paths, labels, titles, token pieces) goes through
// these on its way into a report, so a name can neither inject markup nor break a table.
#pragma once
#include <string>

namespace ikv::io {

// HTML text and attribute values: & < > " '.
std::string escape_html(const std::string& s);
// A Markdown table cell or heading: no raw HTML (Markdown renderers pass it through), no cell
// border, code span or line break.
std::string escape_md(const std::string& s);

}  // namespace ikv::io
