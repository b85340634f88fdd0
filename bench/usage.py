"""CPU and memory of process trees, read from /proc: what each part of the stack costs.

A process's CPU is its own (utime + stime) plus that of its children that ended and were
reaped (cutime + cstime), so PostgreSQL backends of closed connections and recycled pool
processes still count; trees rather than process groups, because PostgreSQL's backends each
start a session of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """CPU seconds and resident memory of one process tree at one moment."""

    cpu_seconds: float
    rss_bytes: int


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (from /proc/stat): with the
    product's own trees, shows how much of the machine something else took meanwhile."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / CLOCK_TICKS


def process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, CPU ticks used by it and its reaped children, resident pages) of
    every live process (/proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text()
        except OSError:
            continue  # ended meanwhile
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (
            int(fields[1]),
            # utime + stime, and cutime + cstime: the CPU of children that ended and were
            # reaped (PostgreSQL backends of closed connections, recycled pool processes).
            sum(int(ticks) for ticks in fields[11:15]),
            int(statm.split()[1]),
        )
    return table


def tree_usage(root: int, table: dict[int, tuple[int, int, int]]) -> Usage:
    """Sum over ``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    cpu_ticks = rss_pages = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            cpu_ticks += table[pid][1]
            rss_pages += table[pid][2]
        pending.extend(children.get(pid, ()))
    return Usage(cpu_ticks / CLOCK_TICKS, rss_pages * PAGE_SIZE)
