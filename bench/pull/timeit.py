#!/usr/bin/python3
"""timeit.py OUT CMD...: run CMD once (stdout to /dev/null, stderr kept for
errors), append "<wall seconds> <peak RSS KiB> <CPU seconds>" to OUT.  The clock runs from
just before the fork to the child's exit, so a shell's or a timing tool's own
start-up is not counted (it would swamp a 10 ms resolve); peak RSS and CPU
time (user + system) come from the child's rusage (wait4)."""
import os
import subprocess
import sys
import time

out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
dt = time.perf_counter() - t0
p.returncode = os.waitstatus_to_exitcode(status)
if p.returncode != 0:
    sys.stderr.write(err.decode(errors="replace"))
    sys.stderr.write("timeit: %s exited %d\n" % (" ".join(cmd), p.returncode))
    sys.exit(1)
with open(out, "a") as f:
    f.write("%.6f %d %.6f\n" % (dt, ru.ru_maxrss, ru.ru_utime + ru.ru_stime))
