"""Background threads lower their own priority; the thread that asked for it only."""

from __future__ import annotations

import sys
import threading

import pytest

from sleepvlm_ws.core.base.thread_priority import BACKGROUND_NICENESS, lower_this_thread, thread_niceness


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads are lowered one by one on Linux only")
def test_a_background_thread_lowers_itself_and_no_other():
    before = thread_niceness()
    seen = {}

    def background():
        seen["lowered"] = lower_this_thread()
        seen["inside"] = thread_niceness()

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    assert seen["lowered"] is True
    assert seen["inside"] == min(19, before + BACKGROUND_NICENESS)
    assert thread_niceness() == before          # the calling thread (the GUI's) is untouched
