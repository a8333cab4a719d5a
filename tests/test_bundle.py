"""The Linux desktop bundle (issue 6), built from this checkout and smoke-tested as a user gets it.

`packaging/linux/ci_bundle.sh` builds the one-folder PyInstaller application (llama.cpp compiled
for portable x86-64 CPUs, the default pack, the rule catalogue, the demo generator), unpacks the
tar.gz into an empty folder and runs the built program with a clean environment: the demo opens
and stores the default pack's suggestions, bad input gets one line, the audit verifies, no AVX-512
code is in the llama.cpp libraries. About 7 minutes the first time (compiling llama.cpp), under
2 minutes once the portable wheel is cached. SLEEPVLM_WS_SKIP_BUNDLE=1 skips it in a quick local
loop; CI never sets it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT / "packaging" / "dist" / "SleepVLM-Workstation-linux-x86_64.tar.gz"


@pytest.mark.skipif(os.environ.get("SLEEPVLM_WS_SKIP_BUNDLE") == "1",
                    reason="SLEEPVLM_WS_SKIP_BUNDLE=1 (a quick local loop)")
@pytest.mark.timeout(60 * 60)     # its own subprocess limit is 50 minutes
def test_the_linux_bundle_builds_and_passes_its_smoke_test():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "QT_QPA"))}
    run = subprocess.run(["bash", str(ROOT / "packaging" / "linux" / "ci_bundle.sh")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=50 * 60)
    tail = (run.stdout[-3000:] + "\n" + run.stderr[-3000:]).strip()
    assert run.returncode == 0, tail
    counts = re.search(r"^smoke: (\d+) passed, (\d+) failed$", run.stdout, re.M)
    assert counts and int(counts.group(1)) >= 15 and counts.group(2) == "0", tail
    assert "smoke: FAIL" not in run.stdout
    assert TARBALL.is_file() and TARBALL.stat().st_size > 50 * 2**20
