"""Wall time, CPU seconds and load average for one measure, and memory and disk of processes
and folders (Linux /proc). Every figure the comparison prints goes through `Meter`, so each wall
time has its CPU seconds (this process, its reaped children, and the servers' processes) and
the 1-minute load average beside it."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 once it is gone."""
    return sum(proc_times(pid))


def proc_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def page_cache_yardstick(folder: Path, mib: int = 256) -> dict[str, Any]:
    """Seconds (wall and this process's system CPU) to write `mib` MiB to a new file in
    `folder`, which is then removed: what new page-cache pages cost the kernel on this machine
    now. On some virtual machines it moves by 30 times with what was freed before (a page the
    guest freed and handed back to the host is slow to take again), and a write-heavy measure
    such as an import moves with it; printed beside it, after it (writing first would hand the
    measure pages just freed)."""
    block = b"\xa5" * (1 << 20)
    path = folder / "page-cache-yardstick.bin"
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(mib):
            os.write(fd, block)
    finally:
        os.close(fd)
        wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        path.unlink()
    return {"mib": mib, "wall_s": round(wall, 3), "sys_s": round(r1.ru_stime - r0.ru_stime, 3)}


def children_of(root: int) -> list[int]:
    """`root` and every process descended from it."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text()
                                     .rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [root], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _status_kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_mib(pids: Iterable[int]) -> float:
    return round(sum(_status_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids) / 1024, 1)


def rss_mib(pids: Iterable[int]) -> float:
    return round(sum(_status_kib(f"/proc/{p}/status", "VmRSS") for p in pids) / 1024, 1)


def du_mib(path: str | Path, match: Callable[[Path], bool] | None = None) -> float:
    """Disk used (allocated blocks) under a folder, or by the files `match` keeps."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = Path(dirpath) / f
            if match is None or match(p):
                try:
                    total += p.lstat().st_blocks * 512
                except OSError:
                    pass
    return round(total / 2**20, 1)


def _self_cpu() -> tuple[float, float]:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


class Meter:
    """`with Meter(servers) as m: ...` then `m.result()`: wall seconds, CPU seconds of this
    process, of its children reaped meanwhile, and of the server processes `servers()` names
    (asked at start and end; a server's new backends count from zero), and the load average
    at the start and the end."""

    def __init__(self, servers: Callable[[], list[int]] | None = None) -> None:
        self.servers = servers or (lambda: [])

    def __enter__(self) -> Meter:
        self.load0 = os.getloadavg()[0]
        self.srv0 = {p: proc_times(p) for p in self.servers()}
        self.self0, self.kids0 = _self_cpu()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        s, k = _self_cpu()
        self.cpu_self, self.cpu_children = s - self.self0, k - self.kids0
        times = [(u - u0, s - s0) for p in self.servers()
                 for (u, s), (u0, s0) in [(proc_times(p), self.srv0.get(p, (0.0, 0.0)))]]
        self.cpu_servers = sum(u + s for u, s in times)
        self.sys_servers = sum(s for _, s in times)
        self.load1 = os.getloadavg()[0]

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"wall_s": round(self.wall, 3), "cpu_s_bench": round(self.cpu_self, 3),
                "cpu_s_clients": round(self.cpu_children, 3),
                "cpu_s_server": round(self.cpu_servers, 3),
                "cpu_s_server_system": round(self.sys_servers, 3),
                "load1": [round(self.load0, 2), round(self.load1, 2)], **extra}


def summary(ms: list[float]) -> dict[str, Any]:
    ms = sorted(ms)
    return {"median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2), "n": len(ms)}
