#!/usr/bin/env bash
# On the GPU machine: the demo trained 40 steps straight, and 40 steps interrupted with Ctrl-C
# (SIGINT) after the first checkpoint, then resumed with --resume; the two adapters must be the same bits.
S=bench/bin/swiftlet; [ -x $S ] || { python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('bench/bin/swiftlet.xz'), open('bench/bin/swiftlet', 'wb'))"; chmod +x $S; }
$S train --device cuda --max-steps 40 --output /tmp/straight > /dev/null 2>&1
$S train --device cuda --max-steps 40 --save-steps 20 --output /tmp/split > /dev/null 2>&1 & pid=$!
while [ ! -d /tmp/split/checkpoint-20 ]; do sleep 0.2; done; kill -INT $pid; wait $pid; echo "interrupted run exit $?"
ls /tmp/split
$S train --device cuda --max-steps 40 --save-steps 20 --output /tmp/split --resume 2>&1 | grep -E "resumed|done"
python3 - <<'PY'
from safetensors.numpy import load_file
a = load_file('/tmp/straight/adapter_model.safetensors'); b = load_file('/tmp/split/adapter_model.safetensors')
same = all((a[k] == b[k]).all() for k in a)
import numpy as np
worst = max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-30)) for k in a)
print("GPU resume: bit-identical" if same else f"GPU resume: differs, worst rel {worst:.3e}")
PY
