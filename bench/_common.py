"""Helpers shared by the benchmark scripts: environment, child processes, machine facts, stats.

Nothing here is imported by the app. The scripts run from the repository root as
``.venv/bin/python bench/<script>.py``.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Variables that would move state out of the temporary data directory or switch to servers.
_SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "NANOSENTRI_CHROMA_DIR", "NANOSENTRI_CELERY_EAGER")


def bench_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for the bench process and its children: embedded defaults, temp data dir."""
    env = {k: v for k, v in os.environ.items() if k not in _SERVER_VARIABLES}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
            "NANOSENTRI_DATA_DIR": str(data_dir),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            # The app keeps the vectors of recent questions; the benches ask the same questions in
            # every run, so they keep only the last one (an answer still embeds its question once).
            "NANOSENTRI_EMBEDDING_QUERY_MEMO": "1",
        }
    )
    env.update(extra)
    return env


def apply_environment(env: dict[str, str]) -> None:
    for key in _SERVER_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)


# --- child processes -------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover - not glibc
    _libc = None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the bench is killed (even with SIGKILL),
    # the kernel sends SIGTERM to the child.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """The processes this bench started; ``stop_all`` ends exactly those (by pid / own group)."""

    def __init__(self):
        self._procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: pgid == pid
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for _name, proc in list(reversed(self._procs)):
            self.stop(proc)


def exit_on_sigterm() -> None:
    """SIGTERM / SIGHUP raise SystemExit so ``finally`` blocks clean up (Ctrl-C raises KeyboardInterrupt)."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- machine facts -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine_lines() -> list[str]:
    return [
        f"- date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores (`nproc`), CPU only",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- load average at start (1, 5, 15 min): {load_average()}",
    ]


def package_versions(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in names:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


# --- statistics and tables -------------------------------------------------------------------


def median(values) -> float:
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


def fmt(value, digits: int = 1) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:,.{digits}f}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000
