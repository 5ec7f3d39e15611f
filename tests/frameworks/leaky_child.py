"""A child that breaks one of fw_support's rules, to show that the rule is checked:
``leaky_child.py process|segment|hang``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

mode = sys.argv[1]  # (no fw_common: importing torch would take most of the time limit)
if mode == "process":  # a grandchild left running in the child's session
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    subprocess.Popen(sleeper, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
elif mode == "segment":  # a name in /dev/shm as ladle makes them, with this process's pid
    with open(f"/dev/shm/ladle-{os.getpid()}-00000000-0", "w"):
        pass
elif mode == "hang":
    time.sleep(120)
print("RESULT {}", flush=True)
