"""The CSV worker pool, and the rule that its workers never outlive the command.

Workers start from a forkserver that has already imported the CSV stack (no fork of a threaded
parent, no re-import per worker). Each worker:
- ignores Ctrl-C (the parent handles it and shuts the pool down, so no traceback per worker);
- asks the kernel for SIGKILL when its parent (the forkserver, which itself exits as soon as the
  command dies) goes away (Linux prctl PR_SET_PDEATHSIG);
- and, on every OS, runs a watchdog thread that exits the worker once the command's process is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5


def start_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` CSV readers bound to this process's lifetime."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["converters.series", "converters.workers"])
    else:  # Windows
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=(os.getpid(),))


def init_worker(command_pid: int) -> None:
    """Runs in each worker before its first task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = os.getppid()
    threading.Thread(target=_watch, args=(command_pid, parent), name="tsconvert-watchdog", daemon=True).start()


def _watch(command_pid: int, parent: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent or not _alive(command_pid):
            os._exit(1)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) sends CTRL_C_EVENT there; getppid() is the command
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
