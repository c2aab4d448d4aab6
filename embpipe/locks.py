"""An inter-process file lock, for the few first-time initialisations that race (SQLite schema creation, starting
the local teacher server). Waiting for a lock another process holds is said on stderr, never silent."""

import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            started = time.monotonic()
            print(f"[embpipe] waiting for {path}: another embpipe process holds it", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
            print(f"[embpipe] got {path} after {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
