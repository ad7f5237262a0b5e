#!/usr/bin/env bash
# The layers of src/ include only layers below them (docs/DESIGN.md):
#   io → kernels → model → engine → quant → intactkv → eval → plot → exp
# plot (drawing) sits above every algorithm so that none of them can draw: they return data, and
# exp and apps/ draw it. A folder not in the list, or an include of a higher layer, fails.
source "$(dirname "$0")/common.bash"
python3 - <<'PY' && pass "no layer includes a layer above it" || bad "layer order broken (above)"
import os, re, sys
order = ["io", "kernels", "model", "engine", "quant", "intactkv", "eval", "plot", "exp"]
rank = {name: i for i, name in enumerate(order)}
problems = []
for layer in sorted(os.listdir("src")):
    if not os.path.isdir(os.path.join("src", layer)):
        continue
    if layer not in rank:
        problems.append(f"src/{layer}: not in the layer order of tests/cli/layers.sh")
        continue
    for f in sorted(os.listdir(os.path.join("src", layer))):
        text = open(os.path.join("src", layer, f), errors="ignore").read()
        for m in re.finditer(r'^\s*#\s*include\s+"([^/"]+)/[^"]+"', text, re.M):
            target = m.group(1)
            if target in rank and rank[target] > rank[layer]:
                problems.append(f"src/{layer}/{f} includes {m.group(0).split(None, 1)[1]} ({target} is above {layer})")
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
finish
