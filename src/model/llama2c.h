// Karpathy's llama2.c checkpoint (.bin, "version 0"): a header of 7 int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative = unshared classifier), seq_len
// then fp32 arrays stacked over layers, each matrix row-major [out, in]:
//   token_embedding[vocab, dim], rms_att[L, dim], wq[L, dim, dim], wk[L, kv_dim, dim],
//   wv[L, kv_dim, dim], wo[L, dim, dim], rms_ffn[L, dim], w1[L, hidden, dim], w2[L, dim, hidden],
//   w3[L, hidden, dim], rms_final[dim], freq_cis_real/imag[seq_len, head_dim/2] (legacy, skipped),
//   wcls[vocab, dim] only when unshared.
// llama2.c rotates interleaved pairs (2j, 2j+1); HF rotates (j, j + head_dim/2). The reader permutes
// the rows of wq and wk within each head (evens first, then odds) so the engine's HF-layout RoPE
// computes exactly what llama2.c computes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace ikv::model {

struct Llama2cLayer {
  std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3;
};

struct Llama2cCheckpoint {
  Config config;
  std::vector<float> embed;
  std::vector<Llama2cLayer> layers;
  std::vector<float> final_norm;
  std::vector<float> wcls;  // empty when shared with embed
};

// Parses a .bin image; every size is checked against `size` before reading. `path` names errors.
Llama2cCheckpoint parse_llama2c(const uint8_t* bytes, size_t size, const std::string& path);
Llama2cCheckpoint read_llama2c(const std::string& path);

// Row permutation from llama2.c's interleaved layout to HF's rotate_half layout (and back), for a
// [n_heads * head_dim, in] matrix.
std::vector<float> permute_interleaved_to_half(const std::vector<float>& w, int64_t n_heads, int64_t head_dim,
                                               int64_t in);

}  // namespace ikv::model
