// A YAML document as plain data that remembers where every node came from (file:line:column), so
// a problem found after `extends` merging still points at the file and line that said it.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ikv::exp {

struct YamlNode {
  enum class Kind { Null, Scalar, Sequence, Map };
  Kind kind = Kind::Null;
  std::string scalar;                                  // Scalar
  std::vector<YamlNode> items;                         // Sequence
  std::vector<std::pair<YamlNode, YamlNode>> entries;  // Map: scalar key -> value, in file order
  std::string file;                                    // where the node was written
  int line = 0, column = 0;                            // 1-based

  std::string where() const;                         // "file:line:column"
  const YamlNode* find(std::string_view key) const;  // nullptr when absent (or not a map)

  // Declared here, defaulted below: `entries` holds pairs of the still-incomplete YamlNode, which
  // clang (with libstdc++ 12) cannot instantiate inside the class as implicit members require.
  YamlNode();
  YamlNode(const YamlNode&);
  YamlNode(YamlNode&&) noexcept;
  YamlNode& operator=(const YamlNode&);
  YamlNode& operator=(YamlNode&&) noexcept;
  ~YamlNode();
};
inline YamlNode::YamlNode() = default;
inline YamlNode::YamlNode(const YamlNode&) = default;
inline YamlNode::YamlNode(YamlNode&&) noexcept = default;
inline YamlNode& YamlNode::operator=(const YamlNode&) = default;
inline YamlNode& YamlNode::operator=(YamlNode&&) noexcept = default;
inline YamlNode::~YamlNode() = default;

// Parses `text` as the YAML file `file`, then resolves `extends: OTHER.yaml` (relative to the
// extending file's folder, chains allowed): maps are deep-merged with the extending file winning
// key by key, lists and scalars are replaced whole. YAML anchors and aliases are native; `<<: *x`
// merge keys are honoured too (yaml-cpp 0.7 leaves them to us). Throws ikv::Error naming
// file:line:column for malformed YAML, an unreadable extends file, or an extends cycle.
// `sources` (optional) receives every file read, the extending file first; `texts` their texts,
// concatenated in that order.
YamlNode parse_yaml_with_extends(const std::string& text, const std::string& file,
                                 std::vector<std::string>* sources = nullptr, std::string* texts = nullptr);
// The same, reading `path` first; a missing file is an Error "PATH: cannot read config file".
YamlNode load_yaml_with_extends(const std::string& path, std::vector<std::string>* sources = nullptr,
                                std::string* texts = nullptr);

}  // namespace ikv::exp
