#include "model/shard_index.h"

#include <nlohmann/json.hpp>
#include <set>

#include "io/error.h"
#include "io/json.h"

namespace ikv::model {
namespace {

// A name that stays inside the model folder when joined to it.
bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s.find('/') == std::string::npos && s.find("..") == std::string::npos;
}

}  // namespace

ShardIndex parse_shard_index(const std::string& json_text, const std::string& index_path) {
  const nlohmann::json j = io::parse_json(json_text, index_path);
  const auto map = j.find("weight_map");  // end() unless j is an object with that key
  if (map == j.end() || !map->is_object()) fail(index_path, ": no weight_map object");
  if (map->empty()) fail(index_path, ": weight_map is empty");
  ShardIndex index;
  std::set<std::string> seen;
  for (auto it = map->begin(); it != map->end(); ++it) {  // tensor names in sorted order
    if (it.key().empty()) fail(index_path, ": weight_map has an empty tensor name");
    if (!it.value().is_string()) fail(index_path, ": weight_map entry ", it.key(), " is not a file name");
    const std::string& file = it.value().get_ref<const std::string&>();
    if (file.find('\0') != std::string::npos)  // open(2) would stop there; keep it out of the message too
      fail(index_path, ": shard name of ", it.key(), " contains a NUL byte");
    if (!plain_file_name(file)) fail(index_path, ": shard name '", file, "' must be a plain file name");
    if (seen.insert(file).second) index.shards.push_back(file);
    index.shard_of.emplace(it.key(), file);
  }
  return index;
}

}  // namespace ikv::model
