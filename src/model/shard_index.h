// model.safetensors.index.json: which shard file holds each tensor of a sharded HF checkpoint.
// Parsed apart from opening the shards, so that the untrusted text is checked in one place (and
// can be fuzzed alone: fuzz/fuzz_shard_index.cc) before any file name in it reaches the disk.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace ikv::model {

struct ShardIndex {
  std::vector<std::string> shards;              // distinct shard file names, in first-use order
  std::map<std::string, std::string> shard_of;  // tensor name -> shard file name (one of shards)
};

// Throws Error "INDEX_PATH: problem" for bad JSON, no (or an empty) weight_map object, an empty
// tensor name, an entry that is not a string, or a shard name that is not a plain file name (empty,
// ".", containing '/', ".." or a NUL byte). First-use order is the order of the tensor names.
ShardIndex parse_shard_index(const std::string& json_text, const std::string& index_path);

}  // namespace ikv::model
