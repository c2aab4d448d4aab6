"""The inter-process file lock excludes another holder and says when it waits."""

from __future__ import annotations

import subprocess
import sys
import time

from embpipe.locks import file_lock

HOLD = "import sys, time\nfrom pathlib import Path\nfrom embpipe.locks import file_lock\n" \
       "with file_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(1.5)\n"  # fmt: skip


def test_waiting_for_a_held_lock_is_said_and_the_lock_is_exclusive(tmp_path, capsys):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with file_lock(lock):
        waited = time.monotonic() - started  # the other process had to let go first (it holds it for 1.5 s)
    holder.wait(timeout=10)
    err = capsys.readouterr().err
    assert waited > 1.0 and f"waiting for {lock}: another embpipe process holds it" in err and "got" in err


def test_a_free_lock_is_taken_silently(tmp_path, capsys):
    with file_lock(tmp_path / "free.lock"):
        pass
    assert capsys.readouterr().err == ""
