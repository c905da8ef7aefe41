"""Issue 14 (docs/RESULTS.md, "A demo that fits 15 minutes on this Xeon has too few steps"):
`panonet demo` on the CPU with other step counts for its two stages, everything else as the
demo (panonet.demo.FULL with stage1_steps / stage2_steps replaced). Resumable like the demo.

Usage: python docs/scripts/demo_steps.py OUT STAGE1_STEPS STAGE2_STEPS
   e.g. python docs/scripts/demo_steps.py /tmp/d45 3200 1300
"""

import dataclasses
import json
import sys

from panonet import demo

out, stage1, stage2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
demo.FULL = dataclasses.replace(demo.FULL, stage1_steps=stage1, stage2_steps=stage2)
metrics = demo.run_demo(out, device="cpu", progress=False)
print(json.dumps(metrics["seconds"], indent=1))
