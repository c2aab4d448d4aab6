"""Finding, starting and watching the local teacher server (``embpipe.llm.local_server``).

A ``local/<name>`` teacher is served by one process per (model, threads, reset mode, parallel sequences) on
this machine,
published in a state file under ``<model cache>/servers/``; every run process that needs it finds it there,
or starts it under a file lock so that two runs never load the model twice. The server exits by itself
after ``idle_timeout_s`` without a request.

When a call fails and the server is gone, ``LocalEndpoint.crashed`` turns that into ``TeacherCrashed``:
the item in flight is recorded as a teacher failure (with what happened and what to do), the next call
starts a fresh server, and after ``max_crashes`` crashes in one process the stage stops with
``LocalTeacherUnavailable`` instead of crashing once per item.

Example:
    >>> endpoint = endpoint_for("smollm2-135m", threads=2)  # doctest: +SKIP
    >>> endpoint.ensure()  # doctest: +SKIP
    'http://127.0.0.1:41234/v1'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from embpipe.llm.model_weights import require_model
from embpipe.locks import file_lock
from embpipe.paths import model_cache_dir

logger = logging.getLogger(__name__)
REBUILD_HINT = (
    "if it dies on every prompt, the llama-cpp-python build does not fit this CPU: reinstall it with "
    "bash scripts/install.sh (a portable AVX2 build), or point --teacher at a served model"
)


class LocalTeacherUnavailable(RuntimeError):
    """The local teacher cannot be started, or crashed too often: the stage stops with this message."""


class TeacherCrashed(ConnectionError):
    """The local teacher process died while a request was open; that item is recorded as failed."""


LOCAL_PARALLEL = 8  # replies the local teacher decodes together by default, sent in waves (``waves``)
_children: dict[int, subprocess.Popen] = {}  # servers this process started: their exit must be reaped


def pid_alive(pid: int) -> bool:
    """Whether the process with this pid is running (a server of ours that exited is reaped, not a zombie)."""
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(port: int, model: str, timeout_s: float = 2.0) -> bool:
    """Whether a local teacher for ``model`` answers ``/health`` on ``port``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout_s) as response:
            return json.loads(response.read()).get("model") == model
    except (OSError, ValueError):
        return False


def log_tail(path: Path, lines: int = 6, chars: int = 600) -> str:
    """The last lines of a log file, shortened, or a note that there is none."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(text)[-chars:] or "(empty log)"


def exit_description(returncode: int | None) -> str:
    """``-11`` → ``killed by signal SIGSEGV``; ``3`` → ``exited with code 3``; ``None`` → unknown."""
    if returncode is None:
        return "ended (exit status unknown: another process started it)"
    if returncode < 0:
        try:
            return f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class LocalEndpoint:
    """The local teacher server for one model and thread count, started on demand and watched."""

    model: str
    threads: int = 2
    reset_each_call: bool = False
    parallel: int = 1
    idle_timeout_s: float = 600.0
    startup_timeout_s: float = 180.0
    max_crashes: int = 3
    crashes: int = 0
    _state: dict | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> str:
        """One server per model, thread count, reset mode, parallel sequences and Python environment (its code
        and llama build)."""
        environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:8]
        reset = "-reset" if self.reset_each_call else ""
        parallel = f"-p{self.parallel}" if self.parallel > 1 else ""
        return f"{self.model}-t{self.threads}{reset}{parallel}-{environment}"

    @property
    def folder(self) -> Path:
        return model_cache_dir() / "servers"

    @property
    def state_path(self) -> Path:
        return self.folder / f"{self.key}.json"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.key}.log"

    def alive(self) -> bool:
        """Whether the server this endpoint last used is still running."""
        return self._state is not None and pid_alive(self._state["pid"])

    def gone(self, grace_s: float = 2.0) -> bool:
        """Whether the server has died, allowing ``grace_s`` for one that dropped its connections while exiting."""
        deadline = time.monotonic() + grace_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.alive()

    def ensure(self) -> str:
        """The server's OpenAI base URL, starting a server when none is running."""
        with self._lock:
            if self._state is not None:
                if self.alive():
                    return self.url()
                if self._published_pid() == self._state["pid"]:  # gone without its clean exit: a crash
                    raise self._record_crash()
                self._state = None  # it exited after its idle timeout
            if self.crashes >= self.max_crashes:
                raise LocalTeacherUnavailable(
                    f"the local teacher {self.model} crashed {self.crashes} times in this process; giving up "
                    f"(log: {self.log_path}; last lines: {log_tail(self.log_path)}); {REBUILD_HINT}"
                )
            require_model(self.model)
            with file_lock(self.folder / f"{self.key}.lock"):
                self._state = self._running_server() or self._start_server()
            return self.url()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._state['port']}/v1"

    def _running_server(self) -> dict | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if pid_alive(state["pid"]) and healthy(state["port"], self.model):
            return state
        logger.warning("local teacher %s (pid %s) is gone; starting a new one", self.model, state.get("pid"))
        self.state_path.unlink(missing_ok=True)
        return None

    def _start_server(self) -> dict:
        command = [
            sys.executable, "-m", "embpipe.llm.local_server", "--model", self.model, "--state", str(self.state_path),
            "--threads", str(self.threads), "--idle-timeout-s", str(self.idle_timeout_s),
            "--parallel", str(self.parallel),
        ] + (["--reset-each-call"] if self.reset_each_call else [])  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        logger.info("starting the local teacher %s (%d threads); log: %s", self.model, self.threads, self.log_path)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _children[process.pid] = process
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalTeacherUnavailable(
                    f"the local teacher {self.model} {exit_description(process.returncode)} while starting "
                    f"(log {self.log_path}: {log_tail(self.log_path)}); {REBUILD_HINT}"
                )
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(self.state_path.read_text())
                if state.get("pid") == process.pid:
                    return state
            time.sleep(0.1)
        process.kill()
        raise LocalTeacherUnavailable(
            f"the local teacher {self.model} did not start within {self.startup_timeout_s:.0f} s "
            f"(log {self.log_path}: {log_tail(self.log_path)})"
        )

    def _published_pid(self) -> int | None:
        try:
            return int(json.loads(self.state_path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def crashed(self) -> TeacherCrashed:
        """Record that the server died under an open request; the error to raise for the item in flight."""
        with self._lock:
            return self._record_crash()

    def _record_crash(self) -> TeacherCrashed:
        self.crashes += 1
        pid = self._state["pid"] if self._state else None
        returncode = _children[pid].poll() if pid in _children else None
        self._state = None
        self.state_path.unlink(missing_ok=True)
        message = (
            f"the local teacher process for {self.model} (pid {pid}) {exit_description(returncode)} before "
            f"answering this request (crash {self.crashes} of at most {self.max_crashes}; the next call starts a "
            f"new one). Log {self.log_path}: {log_tail(self.log_path)}. A rerun pays only for the failed items; "
            f"{REBUILD_HINT}"
        )
        logger.error(message)
        return TeacherCrashed(message)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (whoever started it), wait until it is gone, and forget it."""
        with self._lock:
            state = self._state or self._running_server()
            self._state = None
            if state is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(state["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._published_pid() == state["pid"]:
                self.state_path.unlink(missing_ok=True)


_endpoints: dict[tuple, LocalEndpoint] = {}
_endpoints_lock = threading.Lock()


def endpoint_for(
    model: str, threads: int = 2, reset_each_call: bool = False, idle_timeout_s: float = 600.0, parallel: int = 1
):
    """This process's ``LocalEndpoint`` for the settings (one per settings, so crash counts persist)."""
    key = (model, threads, reset_each_call, parallel, str(model_cache_dir()))  # one per server, as its state file
    with _endpoints_lock:
        if key not in _endpoints:
            _endpoints[key] = LocalEndpoint(
                model, threads, reset_each_call, parallel=parallel, idle_timeout_s=idle_timeout_s
            )
        return _endpoints[key]


def stop_all() -> None:
    """Stop the local teacher servers this process started (tests call it at the end of a session); servers
    that other processes started and share are left to their idle timeout."""
    for pid, process in list(_children.items()):
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        _children.pop(pid, None)
