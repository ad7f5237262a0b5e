// The dry run's time and memory estimates: the memory model against arithmetic done by hand for
// LLaMA-2-7B's shapes, the table's columns, and the refusal of a cell that cannot fit.
#include <doctest/doctest.h>

#include <cstdio>

#include "exp/estimate.h"
#include "exp_fixtures.h"
#include "io/error.h"

using namespace ikv;
using namespace ikv::exp;

namespace {

model::Config llama2_7b() {
  model::Config c;
  c.dim = 4096, c.hidden = 11008, c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 32, c.head_dim = 128;
  c.vocab = 32000, c.max_pos = 4096;
  return c;
}

Cell ppl_cell(const std::string& dtype, const QuantizerSpec& q, int ctx = 512, int windows = 8) {
  Cell cell;
  cell.model.name = "syn7b", cell.model.path = "syn7b", cell.model.dtype = dtype;
  cell.quant = q;
  cell.task = PplUnit{"wikitext2", ctx, windows};
  return cell;
}

QuantizerSpec rtn(int bits) {
  QuantizerSpec q;
  q.method = "rtn", q.wbits = bits, q.group = 128;
  return q;
}

constexpr double GB = 1e9;

}  // namespace

TEST_CASE("estimate: LLaMA-2-7B peak memory by hand") {
  const ModelShape shape{llama2_7b(), 2.0};  // a bf16 checkpoint
  MachineRates big;
  big.available_bytes = int64_t{64} << 30;
  // 6.48 B decoder weights (32 x 202.4 M) + head 131 M, 2 bytes each = 13.2 GB; + KV cache (2 x 32 x
  // 4096 x 576 x 4 = 0.6 GB) + a window's activations and logits (~0.15 GB) + 0.2 GB process.
  const CellEstimate fp = estimate_cell(ppl_cell("fp32", {}), shape, big);
  CHECK(fp.peak_bytes > 13.9 * GB);
  CHECK(fp.peak_bytes < 14.4 * GB);
  CHECK(fp.fits);
  CHECK(fp.seconds == 0);  // no rates measured: no time
  // RTN W4 g128 asymmetric: 0.5 + 3/128 bytes per weight = 3.39 GB of codes; quantizing holds one
  // layer in fp32 and its source pages (202 M x 6 B = 1.2 GB) on top; the head stays bf16 (0.26 GB).
  const CellEstimate w4 = estimate_cell(ppl_cell("q8", rtn(4)), shape, big);
  CHECK(w4.peak_bytes > 4.8 * GB);
  CHECK(w4.peak_bytes < 5.3 * GB);
  const CellEstimate w3 = estimate_cell(ppl_cell("q8", rtn(3)), shape, big);
  CHECK(w3.peak_bytes < w4.peak_bytes);
  QuantizerSpec head8 = rtn(4);
  head8.head_bits = 8;
  CHECK(estimate_cell(ppl_cell("q8", head8), shape, big).peak_bytes < w4.peak_bytes);
  // GPTQ adds 128 x 2048 x 4096 fp32 calibration streams (4.3 GB), the Hessians in double (1.4 GB)
  // and one sample's layer inputs (0.4 GB).
  QuantizerSpec gptq = rtn(3);
  gptq.method = "gptq";
  const CellEstimate g = estimate_cell(ppl_cell("q8", gptq), shape, big);
  CHECK(g.peak_bytes - w3.peak_bytes > 5.5 * GB);
  CHECK(g.peak_bytes - w3.peak_bytes < 6.5 * GB);
}

TEST_CASE("estimate: a model larger than memory goes layer-major, a packed one that cannot fit is refused") {
  model::Config c13 = llama2_7b();
  c13.dim = 5120, c13.hidden = 13824, c13.n_layers = 40, c13.n_heads = c13.n_kv_heads = 40;
  const ModelShape shape{c13, 2.0};
  MachineRates m24;
  m24.available_bytes = int64_t{22} << 30;
  // 26 GB of bf16 layers do not fit: perplexity reads a layer at a time (0.6 GB) and keeps the
  // windows' residual streams (8 x 512 x 5120 x 4 = 84 MB).
  const CellEstimate lm = estimate_cell(ppl_cell("fp32", {}), shape, m24);
  CHECK(lm.fits);
  CHECK(lm.peak_bytes < 3 * GB);
  // An fp32 checkpoint is converted into memory: 50.8 GB of layers, too big.
  const ModelShape fp32_shape{c13, 4.0};
  const CellEstimate big = estimate_cell(ppl_cell("fp32", {}), fp32_shape, m24);
  CHECK_FALSE(big.fits);

  Plan plan;
  plan.cells = {ppl_cell("fp32", {}), ppl_cell("fp32", {})};
  plan.cells[1].index = 1;
  plan.cells[1].key = "k1";
  plan.cells[1].model.name = "fp32-checkpoint";
  const EstimateFn estimate = [&](const Cell& cell) {
    return estimate_cell(cell, cell.model.name == "syn7b" ? shape : fp32_shape, m24);
  };
  std::string error;
  try {
    refuse_oversized_cells(plan, estimate, {});
  } catch (const ikv::Error& e) {
    error = e.what();
  }
  CHECK(error.starts_with("syn7b: cell 2 ("));
  CHECK(error.find(") needs about 53.5 GB; ") != std::string::npos);
  CHECK_NOTHROW(refuse_oversized_cells(plan, estimate, [](const std::string& k) { return k == "k1"; }));
  const std::string table = render_plan(plan, estimate_tokens, {}, estimate);
  CHECK(table.find("  est  time") != std::string::npos);
  CHECK(table.find("peak mem\n") != std::string::npos);
  CHECK(table.find(" 2.4 GB\n") != std::string::npos);  // the layer-major cell
  CHECK(table.find(" too big\n") != std::string::npos);
  CHECK(table.find("1 cell(s) will not fit in memory") != std::string::npos);
}

TEST_CASE("estimate: time from measured rates scales with the tokens and the weights' form") {
  const ModelShape shape{llama2_7b(), 2.0};
  MachineRates r;
  r.available_bytes = int64_t{24} << 30;
  r.dense_f32 = 100, r.dense_bf16 = 300, r.packed_f32 = 100, r.packed_q8 = 200;
  // 8 windows x 512 tokens x 13.5 GFLOP per token at 100 GFLOP/s.
  const double flops = 8 * 512 * flops_per_token(shape.config, 512);
  CHECK(flops_per_token(shape.config, 512) == doctest::Approx(2 * 6.6081e9 + 32 * 4.0 * 4096 * 256).epsilon(1e-3));
  CHECK(estimate_cell(ppl_cell("fp32", {}), shape, r).seconds == doctest::Approx(flops / 100e9));
  CHECK(estimate_cell(ppl_cell("bf16", {}), shape, r).seconds == doctest::Approx(flops / 300e9));
  const CellEstimate w4 = estimate_cell(ppl_cell("q8", rtn(4)), shape, r);
  CHECK(w4.seconds == doctest::Approx(flops / 200e9));
  // Packing 6.5 B weights at ~20 ns each: about two minutes, paid once per packed model.
  CHECK(w4.quant_seconds > 60);
  CHECK(w4.quant_seconds < 300);
  Plan plan;
  plan.cells = {ppl_cell("q8", rtn(4)), ppl_cell("q8", rtn(4))};
  plan.cells[1].index = 1;
  plan.cells[0].quant_key = plan.cells[1].quant_key = "rtn-w4";
  const std::string table =
      render_plan(plan, [](const Cell&) { return 0.0; }, {}, [&](const Cell& c) { return estimate_cell(c, shape, r); });
  const double once = 2 * w4.seconds + w4.quant_seconds;
  char total[64];
  std::snprintf(total, sizeof total, "%.1f min", once / 60);
  CHECK(table.find(std::string("tokens, ") + total) != std::string::npos);
}

TEST_CASE("estimate: calibrating a 7B prefix peaks while the FP targets are made") {
  const ModelShape shape{llama2_7b(), 2.0};
  MachineRates big;
  big.available_bytes = int64_t{64} << 30;
  Cell cell = ppl_cell("fp32", rtn(3));
  cell.intactkv.kind = IntactKVSpec::Kind::Calibrated;
  cell.intactkv.calibration.samples = 2;
  cell.intactkv.calibration.max_len = 512;
  // The teacher's 13.2 GB read in place + the W3 student (2.8 GB) + 0.1 GB of targets: 16.6 GB with
  // the process. The 7B run of docs/performance.md measured 16.9 GB.
  const CellEstimate e = estimate_cell(cell, shape, big);
  CHECK(e.peak_bytes > 16.0 * GB);
  CHECK(e.peak_bytes < 17.0 * GB);
}

TEST_CASE("estimate: the GEMM probe measures every form") {
  model::Config c = llama2_7b();
  c.dim = 256, c.hidden = 512;
  const MachineRates r = measure_rates(c);
  CHECK(r.dense_f32 > 0);
  CHECK(r.dense_bf16 > 0);
  CHECK(r.packed_f32 > 0);
  CHECK(r.packed_q8 > 0);
  CHECK(r.available_bytes > 0);
}
