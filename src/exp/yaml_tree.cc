#include "exp/yaml_tree.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "io/error.h"
#include "io/text.h"

namespace ikv::exp {
namespace fs = std::filesystem;

std::string YamlNode::where() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const YamlNode* YamlNode::find(std::string_view key) const {
  if (kind != Kind::Map) return nullptr;
  for (const auto& [k, v] : entries)
    if (k.scalar == key) return &v;
  return nullptr;
}

namespace {

constexpr int kMaxDepth = 64;  // recursive aliases (`&a [*a]`) would otherwise never end
// Aliases share nodes in yaml-cpp but are copied here, so nested anchors ("billion laughs": 9
// levels of 9 aliases) expand exponentially. Real configs have hundreds of nodes and a few KB.
constexpr int64_t kMaxNodes = 100000;
constexpr int64_t kMaxScalarBytes = 16 << 20;
constexpr size_t kMaxFileBytes = 4 << 20;

// What has been expanded so far (over the whole `extends` chain).
struct Budget {
  int64_t nodes = 0, scalar_bytes = 0;
};

bool has_key(const YamlNode& map, const std::string& key) { return map.find(key) != nullptr; }

// `fallback_line/column` place nodes yaml-cpp gives no useful mark (an empty value after `key:`
// is marked at the next line), normally at their key.
YamlNode convert(const YAML::Node& n, const std::string& file, int fallback_line, int fallback_column,
                 int depth, Budget& budget) {
  YamlNode out;
  out.file = file;
  out.line = fallback_line;
  out.column = fallback_column;
  if (depth > kMaxDepth) fail(out.where(), ": YAML nested too deeply (recursive alias?)");
  if (++budget.nodes > kMaxNodes)
    fail(out.where(), ": config expands to more than ", kMaxNodes, " YAML nodes (nested aliases?)");
  const bool null_like = !n.IsDefined() || n.IsNull();
  if (!null_like && n.Mark().line >= 0) {
    out.line = n.Mark().line + 1;
    out.column = n.Mark().column + 1;
  }
  if (null_like) return out;
  if (n.IsScalar()) {
    out.kind = YamlNode::Kind::Scalar;
    out.scalar = n.Scalar();
    if ((budget.scalar_bytes += static_cast<int64_t>(out.scalar.size())) > kMaxScalarBytes)
      fail(out.where(), ": config expands to more than ", kMaxScalarBytes >> 20, " MB of text (nested aliases?)");
  } else if (n.IsSequence()) {
    out.kind = YamlNode::Kind::Sequence;
    for (const auto& item : n) out.items.push_back(convert(item, file, out.line, out.column, depth + 1, budget));
  } else if (n.IsMap()) {
    out.kind = YamlNode::Kind::Map;
    std::vector<YamlNode> merges;  // `<<: *anchor` sources; explicit keys win over them
    for (auto it = n.begin(); it != n.end(); ++it) {
      YamlNode key = convert(it->first, file, out.line, out.column, depth + 1, budget);
      if (key.kind != YamlNode::Kind::Scalar) fail(key.where(), ": map keys must be plain scalars");
      YamlNode value = convert(it->second, file, key.line, key.column, depth + 1, budget);
      if (key.scalar == "<<") {
        merges.push_back(std::move(value));
        continue;
      }
      if (has_key(out, key.scalar)) fail(key.where(), ": duplicate key \"", key.scalar, "\"");
      out.entries.emplace_back(std::move(key), std::move(value));
    }
    for (const YamlNode& m : merges) {
      std::vector<const YamlNode*> sources;
      if (m.kind == YamlNode::Kind::Map) sources.push_back(&m);
      for (const YamlNode& item : m.items) sources.push_back(&item);
      for (const YamlNode* src : sources) {
        if (src->kind != YamlNode::Kind::Map) fail(src->where(), ": << expects a map or a list of maps");
        for (const auto& entry : src->entries)
          if (!has_key(out, entry.first.scalar)) out.entries.push_back(entry);
      }
    }
  }
  return out;
}

// Deep merge: maps key by key (the override's position wins), everything else replaced whole.
void merge_into(YamlNode& base, const YamlNode& over) {
  if (base.kind != YamlNode::Kind::Map || over.kind != YamlNode::Kind::Map) {
    base = over;
    return;
  }
  for (const auto& [key, value] : over.entries) {
    auto it = base.entries.begin();
    while (it != base.entries.end() && it->first.scalar != key.scalar) ++it;
    if (it == base.entries.end()) {
      base.entries.emplace_back(key, value);
    } else {
      it->first = key;
      merge_into(it->second, value);
    }
  }
  base.file = over.file;
  base.line = over.line;
  base.column = over.column;
}

std::optional<std::string> read_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  if (fs::file_size(path, ec) > kMaxFileBytes) fail(path, ": config file is larger than ", kMaxFileBytes >> 20, " MB");
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

struct Chain {
  std::vector<std::string> canonical, shown;  // files currently being resolved, outermost first
  std::vector<std::string>* sources = nullptr;
  std::string* texts = nullptr;
  Budget budget;
};

YamlNode parse_chain(const std::string& text, const std::string& file, Chain& chain) {
  if (text.size() > kMaxFileBytes) fail(file, ": config file is larger than ", kMaxFileBytes >> 20, " MB");
  // yaml-cpp passes ill-formed UTF-8 through; names and paths from the config end up in UTF-8
  // reports and JSON, where such bytes would be replaced or refused.
  if (const size_t bad = io::first_invalid_utf8(text); bad != std::string::npos)
    fail(file, ": not UTF-8 text (byte offset ", bad, ")");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(file, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg);
  }
  YamlNode doc = convert(root, file, 1, 1, 0, chain.budget);
  if (chain.sources) chain.sources->push_back(file);
  if (chain.texts) *chain.texts += text;
  if (doc.kind == YamlNode::Kind::Null) doc.kind = YamlNode::Kind::Map;  // an empty file
  if (doc.kind != YamlNode::Kind::Map) fail(doc.where(), ": expected a map of settings at the top");

  auto ext = doc.entries.begin();
  while (ext != doc.entries.end() && ext->first.scalar != "extends") ++ext;
  if (ext == doc.entries.end()) return doc;
  const YamlNode spec = ext->second;
  doc.entries.erase(ext);
  if (spec.kind != YamlNode::Kind::Scalar || spec.scalar.empty())
    fail(spec.where(), ": extends: expected a file name");

  const std::string base_path = (fs::path(file).parent_path() / spec.scalar).lexically_normal().string();
  const std::string canonical = fs::weakly_canonical(base_path).string();
  for (size_t i = 0; i < chain.canonical.size(); ++i) {
    if (chain.canonical[i] != canonical) continue;
    std::string cycle;
    for (size_t j = i; j < chain.shown.size(); ++j) cycle += chain.shown[j] + " -> ";
    fail(spec.where(), ": extends cycle: ", cycle, base_path);
  }
  const auto base_text = read_file(base_path);
  if (!base_text) fail(spec.where(), ": cannot read extends file ", base_path);
  chain.canonical.push_back(canonical);
  chain.shown.push_back(base_path);
  YamlNode merged = parse_chain(*base_text, base_path, chain);
  chain.canonical.pop_back();
  chain.shown.pop_back();
  merge_into(merged, doc);
  return merged;
}

}  // namespace

YamlNode parse_yaml_with_extends(const std::string& text, const std::string& file,
                                 std::vector<std::string>* sources, std::string* texts) {
  Chain chain;
  chain.texts = texts;
  chain.canonical.push_back(fs::weakly_canonical(file).string());
  chain.shown.push_back(file);
  chain.sources = sources;
  return parse_chain(text, file, chain);
}

YamlNode load_yaml_with_extends(const std::string& path, std::vector<std::string>* sources, std::string* texts) {
  const auto text = read_file(path);
  if (!text) fail(path, ": cannot read config file");
  return parse_yaml_with_extends(*text, path, sources, texts);
}

}  // namespace ikv::exp
