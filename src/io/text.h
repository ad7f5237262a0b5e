// Checks and escapes for user-supplied text. Every user-supplied string (model names and paths,
// labels, titles, token pieces) goes through an escape on its way into a report, so a name can
// neither inject markup nor break a table.
#pragma once
#include <cstddef>
#include <string>

namespace ikv::io {

// Offset of the first byte that is not part of well-formed UTF-8 (overlong forms and surrogates
// included) or is a NUL; std::string::npos when the text is clean.
size_t first_invalid_utf8(const std::string& s);

// HTML text and attribute values: & < > " '.
std::string escape_html(const std::string& s);
// A Markdown table cell or heading: no raw HTML (Markdown renderers pass it through), no cell
// border, code span or line break.
std::string escape_md(const std::string& s);

}  // namespace ikv::io
