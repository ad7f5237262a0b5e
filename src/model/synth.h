// Synthetic checkpoints at real models' shapes: an HF folder (config.json of the family, sharded
// safetensors + model.safetensors.index.json) with random weights drawn deterministically from a
// seed, for measuring memory and speed at 7B-13B scale without downloading a model. Written as a
// stream, a bounded chunk at a time: generating a 13B checkpoint needs a few tens of MB of memory.
//
// Weights: every matrix and embedding uniform with the standard deviation of HF's initializer
// (initializer_range 0.02), norm weights 1, so hidden states and logits stay finite at any depth.
// Value i of a tensor is a hash of (seed, tensor name, i): the same seed gives the same bytes,
// whatever the chunking, threads or shard size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace ikv::model {

// The shapes synthesized: llama2-7b, llama2-13b, llama3-8b (Llama-3.1-8B's config: llama3 RoPE
// scaling, 128k vocabulary, GQA), qwen3-8b (q/k norms, explicit head_dim, 152k vocabulary, no BOS),
// mistral-7b (v0.1: sliding window 4096, GQA).
const std::vector<std::string>& synth_shapes();

struct SynthOptions {
  std::string shape;          // one of synth_shapes()
  int64_t layers = 0;         // decoder layers; 0 = the shape's own count
  std::string dtype = "bf16"; // bf16 | fp16
  uint64_t seed = 0;
  // Test size: hidden 128, 4 heads of 32 (KV heads in the family's ratio), intermediate 256,
  // 2 layers unless `layers` says otherwise, sliding window 64; vocabulary, ids and every
  // architecture feature of the family kept, so the family's tokenizer still fits.
  bool tiny = false;
  int64_t max_shard_bytes = 5'000'000'000;  // a shard holds tensors up to this size (one larger tensor alone)
  // Where the family's tokenizer files are symlinked from (never copied); "" = no tokenizer.
  std::string data_root;
};

struct SynthResult {
  Config config;
  std::string config_json;
  int64_t params = 0;
  int64_t bytes = 0;                       // tensor data bytes over all shards
  std::vector<std::string> shards;         // file names, in order
  std::vector<std::string> tokenizer_files;  // linked from the data root (targets)
};

// The config.json text the shape has under these options (an ikv-parseable HF config).
std::string synth_config_json(const SynthOptions& opt);
// Writes the folder `dir` (created; refused if it exists and is not empty). Each shard is written
// to a temporary file and renamed; config.json comes last, so an interrupted run never leaves a
// folder that loads. Errors name the option or file.
SynthResult write_synth_checkpoint(const std::string& dir, const SynthOptions& opt);

}  // namespace ikv::model
