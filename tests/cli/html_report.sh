#!/usr/bin/env bash
# The HTML report opens in headless Chromium: the DOM holds the results table and the page
# renders to a non-blank screenshot. Skipped (with a message) when Chromium is not installed.
source "$(dirname "$0")/common.bash"
CHROME=$(command -v chromium || command -v chromium-browser || true)
[[ -z "$CHROME" ]] && { echo "SKIP: chromium not installed (apt-get install chromium)"; exit 0; }
[[ -z "$(data_root)" ]] && { echo "SKIP: no ikv-data"; exit 0; }
cat >"$TMP/c.yaml" <<'YAML'
models: [{path: models/stories260K}]
quantizers: [fp, {method: rtn, wbits: 3, group: -1}]
intactkv: [none, bos]
tasks: {ppl: {datasets: [wikitext2], ctx: 128, windows: 3}}
YAML
"$EVAL" run "$TMP/c.yaml" --out "$TMP/out" >/dev/null 2>&1 || bad "run"
"$EVAL" report --out "$TMP/out" --latest --format html >"$TMP/report.html"
FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$TMP/profile")
timeout 60 "$CHROME" "${FLAGS[@]}" --dump-dom "file://$TMP/report.html" >"$TMP/dom.html" 2>/dev/null || bad "dump-dom"
grep -q "<table" "$TMP/dom.html" && grep -q "IntactKV" "$TMP/dom.html" && pass "DOM has the table" || bad "DOM lacks the table"
timeout 60 "$CHROME" "${FLAGS[@]}" --screenshot="$TMP/shot.png" --window-size=1200,900 "file://$TMP/report.html" \
  >/dev/null 2>&1 || bad "screenshot"
python3 - "$TMP/shot.png" <<'PY' && pass "screenshot is not blank" || bad "blank screenshot"
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
# Enough distinct bytes in the compressed image data means something was drawn.
idat = b"".join(data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
                for i in range(8, len(data)) if data[i + 4:i + 8] == b"IDAT")
raw = zlib.decompress(idat)
sys.exit(0 if len(set(raw)) > 20 else 1)
PY
finish
