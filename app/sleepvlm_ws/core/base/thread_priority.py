"""Background work gives way to what the technologist is waiting for.

On a workstation with few cores the whole-night second opinion (YASA and the evidence
measurements, minutes of CPU) ran beside the model answering Explain for the epoch on screen
and more than doubled that answer's time. A background thread lowers its own scheduling
priority (its "nice" value) once, when it starts: the operating system then gives the model
and the window the CPU first, and the background work everything left over. Threads the
background thread starts afterwards (OpenMP pools of the libraries it calls) inherit it;
a pool some other thread created earlier keeps its normal priority.

Linux schedules threads one by one, so only the calling thread is lowered. Elsewhere (macOS,
Windows) the call does nothing and says so: lowering the whole process there would slow the
model too.
"""

from __future__ import annotations

import os
import sys
import threading

BACKGROUND_NICENESS = 10        # added to the thread's nice value (0..19 on Linux; higher: later)


def lower_this_thread(by: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's scheduling priority by ``by`` nice steps (Linux only).

    Parameters
    ----------
    by : int
        Nice steps to add (the kernel caps the value at 19).

    Returns
    -------
    bool
        True when the thread now runs at the lower priority; False where threads cannot be
        lowered one by one (not Linux) or the system refused.
    """
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + int(by)))
    except OSError:
        return False
    return True


def thread_niceness() -> int | None:
    """The calling thread's nice value (Linux; None elsewhere).

    Returns
    -------
    int or None
    """
    if not sys.platform.startswith("linux"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
