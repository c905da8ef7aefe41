"""Issue 14 (docs/RESULTS.md): `panonet demo` on the CPU with some of its settings replaced,
everything else as the demo (panonet.demo.FULL). Each SETTING is FIELD=VALUE, FIELD a field of
panonet.demo.DemoSettings and VALUE a Python literal. Resumable like the demo.

Usage: python docs/scripts/demo_settings.py OUT SETTING...
   e.g. python docs/scripts/demo_settings.py /tmp/d512 'size=(512, 1024)'
"""

import ast
import dataclasses
import json
import sys

from panonet import demo
from panonet.evaluation.run import format_summary

out, pairs = sys.argv[1], sys.argv[2:]
fields = {f.name for f in dataclasses.fields(demo.DemoSettings)}
changes = {}
for pair in pairs:
    name, _, value = pair.partition("=")
    if name not in fields:
        sys.exit(f"demo_settings.py: expected FIELD=VALUE, FIELD in {sorted(fields)}; got {pair!r}")
    changes[name] = ast.literal_eval(value)
demo.FULL = dataclasses.replace(demo.FULL, **changes)
metrics = demo.run_demo(out, device="cpu", progress=False)
print(json.dumps(metrics["seconds"]))
print(format_summary(metrics["evaluation"]))
