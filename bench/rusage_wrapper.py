"""Run a command as a child and write that child's wall time and resource usage as JSON.

Usage: ``python -I -S bench/rusage_wrapper.py RESULT.json COMMAND [ARG ...]``

The exit code is the command's (128 + N when it was killed by signal N). This
small process sits between ``run_bench.py`` and the pipeline because on Linux a
child's ``ru_maxrss`` starts at the peak RSS of the process that forked it: a
pipeline forked straight from the (bigger) benchmark driver would report at
least the driver's peak RSS. Forked from this ~10 MB process, it reports its own.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    result_path, command = argv[1], argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 - running the given command is the point
        except OSError as exc:
            os.write(2, f"cannot run {command[0]}: {exc}\n".encode())
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(
            {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, f
        )
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
