"""A stand-in for PythonSlicer (CTKAppLauncher) in tests: ``python launcher_standin.py PROGRAM ...``.

It behaves as the real launcher does towards the engine (read from CTKAppLauncher's source, not
copied): the program runs as the launcher's own child in the same process group and session, its
output and input are passed through, no signal is forwarded (SIGTERM or SIGINT end the launcher
at once, as they end a Qt application that installs no handler, and leave the child running), and
a child that crashes (ends by a signal) becomes exit code 1, any other exit code is passed on.
"""

from __future__ import annotations

import signal
import subprocess
import sys

LAUNCHER_CRASH_CODE = 1


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # die at once; nothing is forwarded
    child = subprocess.Popen(argv)  # same group and session; stdin/stdout/stderr inherited
    code = child.wait()
    if code < 0:  # killed by a signal: the launcher reports only "exit abnormally"
        print(f"error: [{argv[0]}] exit abnormally - Report the problem.", file=sys.stderr)
        return LAUNCHER_CRASH_CODE
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
