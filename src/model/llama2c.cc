#include "model/llama2c.h"

#include <cstring>

#include "io/error.h"
#include "io/mapped_file.h"

namespace ikv::model {

std::vector<float> permute_interleaved_to_half(const std::vector<float>& w, int64_t n_heads, int64_t head_dim,
                                               int64_t in) {
  // HF row (h, i) with i < d/2 takes llama2.c row (h, 2i); row (h, d/2 + i) takes (h, 2i + 1).
  std::vector<float> out(w.size());
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < head_dim; ++i) {
      int64_t src = h * head_dim + (i < half ? 2 * i : 2 * (i - half) + 1);
      std::memcpy(&out[(h * head_dim + i) * in], &w[src * in], in * sizeof(float));
    }
  return out;
}

Llama2cCheckpoint parse_llama2c(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 28) fail(path, ": truncated llama2.c checkpoint (", size, " bytes, header needs 28)");
  int32_t h[7];
  std::memcpy(h, bytes, sizeof h);
  Llama2cCheckpoint ck;
  Config& c = ck.config;
  const bool shared = h[5] > 0;
  c.dim = h[0];
  c.hidden = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab = h[5] < 0 ? -static_cast<int64_t>(h[5]) : h[5];
  c.max_pos = h[6];
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.tied_embeddings = shared;
  validate_config(c, path);
  if (c.head_dim * c.n_heads != c.dim) fail(path, ": dim ", c.dim, " is not a multiple of n_heads ", c.n_heads);

  const int64_t D = c.dim, H = c.hidden, L = c.n_layers, KV = c.kv_dim(), V = c.vocab;
  // Count the floats the header promises before touching any of them; 128-bit so that no header,
  // however absurd, can overflow the count.
  using i128 = __int128;
  const i128 need = i128(V) * D + i128(L) * (D + i128(D) * D + 2 * i128(KV) * D + i128(D) * D + D + 3 * i128(H) * D) + D +
                    i128(c.max_pos) * c.head_dim + (shared ? 0 : i128(V) * D);
  const int64_t have = static_cast<int64_t>((size - 28) / 4);
  if (need > have)
    fail(path, ": truncated llama2.c checkpoint: header promises ", static_cast<double>(need), " floats, file holds ",
         have);
  if (need < have || (size - 28) % 4 != 0)
    fail(path, ": ", static_cast<int64_t>(have - need), " trailing floats after the llama2.c layout (wrong header or not a llama2.c file)");

  const uint8_t* p = bytes + 28;
  auto take = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    std::memcpy(v.data(), p, n * sizeof(float));
    p += n * sizeof(float);
    return v;
  };
  ck.embed = take(V * D);
  ck.layers.resize(L);
  for (auto& l : ck.layers) l.attn_norm = take(D);
  for (auto& l : ck.layers) l.wq = permute_interleaved_to_half(take(D * D), c.n_heads, c.head_dim, D);
  for (auto& l : ck.layers) l.wk = permute_interleaved_to_half(take(KV * D), c.n_kv_heads, c.head_dim, D);
  for (auto& l : ck.layers) l.wv = take(KV * D);
  for (auto& l : ck.layers) l.wo = take(D * D);
  for (auto& l : ck.layers) l.ffn_norm = take(D);
  for (auto& l : ck.layers) l.w1 = take(H * D);
  for (auto& l : ck.layers) l.w2 = take(D * H);
  for (auto& l : ck.layers) l.w3 = take(H * D);
  ck.final_norm = take(D);
  p += c.max_pos * c.head_dim * sizeof(float);  // freq_cis_real + freq_cis_imag
  if (!shared) ck.wcls = take(V * D);
  return ck;
}

Llama2cCheckpoint read_llama2c(const std::string& path) {
  io::MappedFile f(path);
  return parse_llama2c(f.data(), f.size(), path);
}

}  // namespace ikv::model
