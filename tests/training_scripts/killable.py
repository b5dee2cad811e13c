"""Runs until killed the first time (recording its pid), succeeds on the next run: a replica that a test
kills mid-run so the job's restart policy must bring it back."""

import os
import sys
import time

mark = sys.argv[1]
if os.path.exists(mark + ".pid"):
    print(f"restarted after kill; RANK={os.environ.get('RANK')}", flush=True)
    open(mark + ".done", "w").close()
    raise SystemExit(0)
with open(mark + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(mark + ".tmp", mark + ".pid")
print("first run, waiting to be killed", flush=True)
time.sleep(120)
