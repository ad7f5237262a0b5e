#!/usr/bin/env bash
# Issue #23's variants from the command line on testbed-26M: each runs through ikv-eval ppl and
# changes the number it should (or leaves it where it must stay), sink counts are printed, and
# bad combinations are one-line errors with exit code 2.
source "$(dirname "$0")/common.bash"
ROOT=$(data_root)
[[ -z "$ROOT" ]] && { echo "SKIP: no ikv-data"; exit 0; }

ppl() { "$EVAL" ppl -m testbed-26M --ctx 256 --windows 2 --threads 2 --json "$@" | json_field ppl; }
kv4=$(ppl --kv-bits 4)
kivi=$(ppl --kv-bits 4 --kv-quant per_channel_prerope --kv-residual 64 --kv-group 32)
kivi_all_recent=$(ppl --kv-bits 4 --kv-quant per_channel_prerope --kv-residual 256)
fp=$(ppl)
[[ "$kivi" != "$kv4" && "$kivi" != "$fp" ]] && pass "KIVI keys change the KV4 perplexity" || bad "KIVI: $kivi vs $kv4 / $fp"
[[ "$kivi_all_recent" == "$fp" ]] && pass "KIVI with every token recent = FP cache" || bad "KIVI all recent $kivi_all_recent != FP $fp"

out=$("$EVAL" ppl -m testbed-26M --ctx 256 --windows 2 --threads 2 --kv-bits 4 --kv-protect sinks --json)
python3 -c 'import json,sys; k=json.loads(sys.argv[1])["sink_tokens_per_window"]; sys.exit(0 if len(k) == 2 and all(1 <= x <= 4 for x in k) else 1)' "$out" \
  && pass "sinks: 1..4 tokens kept per window" || bad "sinks: $out"
sinks=$(echo "$out" | json_field ppl)
[[ "$sinks" != "$kv4" ]] && pass "sinks change the KV4 perplexity" || bad "sinks: $sinks == $kv4"

w3=$(ppl --quant rtn --wbits 3)
w3sw=$(ppl --quant rtn --wbits 3 --keep-super-weights)
[[ "$w3" != "$w3sw" ]] && pass "--keep-super-weights changes RTN W3" || bad "super weights: $w3 == $w3sw"
static=$(ppl --quant quarot --abits 4 --kv-bits 4 --intactkv bos --scales static --calib-samples 4 --calib-len 256)
dynamic=$(ppl --quant quarot --abits 4 --kv-bits 4 --intactkv bos)
[[ "$static" != "$dynamic" ]] && pass "static scales run (W4A4KV4 + IntactKV_[B])" || bad "static == dynamic: $static"

expect_error "super weights need rtn" "applies to --quant rtn only" -- "$EVAL" ppl -m testbed-26M --quant awq --keep-super-weights
expect_error "KIVI with sinks" "sink protection applies to the per-token KV quantizer" -- \
  "$EVAL" ppl -m testbed-26M --kv-bits 4 --kv-quant per_channel_prerope --kv-protect sinks
expect_error "unknown key scheme" "--kv-quant" -- "$EVAL" ppl -m testbed-26M --kv-quant per_head
expect_error "static scales need a quantizer" "--scales requires --quant" -- "$EVAL" ppl -m testbed-26M --scales static
finish
