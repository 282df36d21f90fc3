"""How many CPU threads a training step uses: a fixed number, or as many as other processes leave idle.

Why not the framework's default. torch runs a step's kernels on an OpenMP team of one thread per core. When
another process takes a core, every parallel region waits at its barrier for the team member the scheduler
took the core from, and the step slows down several times (2 threads on 2 cores beside one busy process: 2.5x
the time of 1 thread; `scripts/results/bench_threads.md`). One thread avoids that but leaves an idle machine's
second core unused. So "auto" (threads=None) looks at what the other processes took of the CPUs this process may
use (`/proc/stat` less this process's own time) over the last second, and uses the cores they left: all of them
on an idle machine, one fewer per core kept busy by others, never fewer than one. The first step counts the
processes running at that moment instead; then it looks again at most once a second, between steps, so a
competitor that starts or ends mid-run is followed within about a second.

A fixed `threads=N` is used as given. Where `/proc` does not exist (not Linux), "auto" is the usable CPU count.
"""
from __future__ import annotations

import math
import os
from time import monotonic
from pathlib import Path
from typing import Any

from vae_core.checks import as_int

LOOK_EVERY_SECONDS = 1.0  # the shortest time between two looks at the other processes' CPU use
# More threads than this is no CPU count (a typo, or a size meant for another flag): torch and TensorFlow take a C
# int, and 2**31 failed inside the first step, after run.json was written ("Overflow when unpacking long").
MAX_THREADS = 4096


def check_threads(threads: Any, argument: str = "threads") -> int | None:
    """None ("auto") or an int in [1, MAX_THREADS]; `argument` names it in the error ("threads" of fit, or
    "--threads")."""
    if threads is None:
        return None
    number = as_int(threads)
    name = argument if argument.startswith("--") else f"fit: {argument}"
    if number is None or number < 1:
        auto = "" if argument.startswith("--") else "None (auto: the CPUs other processes leave idle) or "
        raise ValueError(f"{name} must be {auto}an int >= 1; got {threads!r}. Pass the number of CPU threads a "
                         f"step may use, e.g. 1 on a machine shared with other work")
    if number > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS:,}; got {threads!r}. Pass the number of CPU threads a "
                         f"step may use: this process may run on {usable_cpus()} CPUs")
    return number


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), capped by a cgroup CPU quota if one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else max(1, cpus)


class ThreadPolicy:
    """The thread count for the next steps: `threads` if fixed, else the usable CPUs less those others keep busy."""

    def __init__(self, threads: int | None):
        self.fixed = threads
        self.cpus = usable_cpus()
        self._last = _cpu_times() if threads is None else None
        self._last_time = monotonic()
        self.current = threads if threads is not None else self.cpus

    def first(self) -> int:
        """The count for the first step: with "auto", the usable CPUs less the other processes' tasks running right
        now (the kernel's count of runnable tasks, less this process's own: its OpenMP threads may still be spinning
        from an earlier call); the one-second looks follow from there."""
        if self.fixed is None:
            others = _others_running_now()
            if others is not None:
                self.current = max(1, self.cpus - others)
        return self.current

    def update(self) -> int:
        """The count for the next step: looked at again when LOOK_EVERY_SECONDS have passed since the last look."""
        if self.fixed is None and self._last is not None:
            now = monotonic()
            if now - self._last_time >= LOOK_EVERY_SECONDS:
                self._look(now)
        return self.current

    def _look(self, now_time: float) -> None:
        now = _cpu_times()
        if now is None or self._last is None:
            return
        busy = (now[0] - self._last[0]) - (now[1] - self._last[1])  # ticks other processes ran
        elapsed = (now_time - self._last_time) * _ticks_per_second()  # ticks one CPU had
        self._last, self._last_time = now, now_time
        if elapsed > 0:
            others = max(0.0, busy / elapsed)  # CPUs the others kept busy, on average
            self.current = max(1, self.cpus - math.floor(others + 0.5))


def _others_running_now() -> int | None:
    """Tasks of other processes running or runnable now: /proc/stat's procs_running less this process's threads in
    state R (/proc/self/task/*/stat)."""
    try:
        running = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                       if line.startswith("procs_running "))
        own = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                own += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):  # a thread that ended meanwhile
                continue
    except (OSError, ValueError, StopIteration):
        return None
    return max(0, running - own)


def _ticks_per_second() -> int:
    """The clock ticks per second of /proc/stat's counters (USER_HZ)."""
    return os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[int, int] | None:
    """(busy ticks of all CPUs since boot, this process's own user + system ticks), or None without /proc."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # user nice system idle iowait irq softirq steal: busy is what this machine's processes ran (not idle or
        # waiting, and not steal, the hypervisor's other guests, which no thread count here can avoid)
        ticks = [int(v) for v in fields[:8]]
        busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return busy, int(own[11]) + int(own[12])  # utime, stime (fields 14 and 15 of proc(5))
    except (OSError, ValueError, IndexError):
        return None


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` (quota / period) on this process's cgroup, if limited."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, _, rel = line.split(":", 2)
            if hierarchy == "0":
                quota, period = (Path("/sys/fs/cgroup") / rel.lstrip("/") / "cpu.max").read_text().split()
                return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None
    return None
