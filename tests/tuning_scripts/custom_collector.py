"""A user's Custom metrics collector (Katib's collector.kind Custom), run by ketch as a sidecar of the trial's
primary pod: it tails the metrics file the trainer writes on the shared metrics volume, pushes every
``name=value`` line with ``ketch.tuning.report``, and exits once the primary container has terminated and the
file is read to its end. It tags what it pushes so the test can tell the collector did the work."""

import os
import re
import sys
import time

from ketch.tuning import report
from ketch.tuning.collector import primary_finished

path = sys.argv[1]
pos, pushed = 0, 0
while True:
    done = primary_finished()  # checked before reading, so nothing written before the end is missed
    if os.path.exists(path):
        with open(path) as f:
            f.seek(pos)
            chunk = f.read()
            pos = f.tell()
        for name, value in re.findall(r"([\w-]+)=([-+\d.eE]+)", chunk):
            report(**{name: float(value)})
            pushed += 1
    if done:
        break
    time.sleep(0.2)
print(f"collector pushed {pushed} metrics from {path}", flush=True)
