"""Figures, the machine they were measured on, the printed table and ``latest.json``.

A :class:`Figure` holds every repeated measurement of one quantity, for the product and for the
naive baseline where the baseline has it, and the target it is held to. Nothing here computes a
figure: the scenarios measure, this module summarizes and reports.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """``value`` and whether the median must be at least (``>=``) or below (``<``) it."""

    op: Literal[">=", "<"]
    value: float

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured < self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:,.0f}"


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    target: Target | None = None
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline_runs) if self.baseline_runs else None

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline (a speed-up, also for latencies)."""
        ours, theirs = self.median, self.baseline_median
        if ours is None or theirs is None or not ours or not theirs:
            return None
        return ours / theirs if self.higher_is_better else theirs / ours

    def as_json(self) -> dict[str, Any]:
        def summary(runs: list[float]) -> dict[str, Any] | None:
            if not runs:
                return None
            return {
                "median": statistics.median(runs),
                "min": min(runs),
                "max": max(runs),
                "runs": runs,
            }

        return {
            "label": self.label,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "product": summary(self.runs),
            "naive": summary(self.baseline_runs),
            "ratio_to_naive": self.ratio,
            "target": str(self.target) if self.target else None,
            "target_met": (
                self.target.met(self.median)
                if self.target is not None and self.median is not None
                else None
            ),
            "note": self.note,
        }


def machine() -> dict[str, Any]:
    """The machine, the interpreter and the commit (``dirty``: with uncommitted changes);
    taken when the run starts."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg(),
    }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width table: median [min–max], naive median, ratio, target."""
    header = ("figure", "unit", "notifier median [min-max]", "naive", "x naive", "target")
    rows = [header]
    for figure in figures:
        spread = (
            f"{_number(figure.median)} [{_number(min(figure.runs))}-{_number(max(figure.runs))}]"
            if figure.runs
            else "-"
        )
        verdict = ""
        if figure.target is not None and figure.median is not None:
            verdict = f"{figure.target} {'met' if figure.target.met(figure.median) else 'MISSED'}"
        ratio = figure.ratio
        rows.append(
            (
                figure.label,
                figure.unit,
                spread,
                _number(figure.baseline_median),
                "-" if ratio is None else f"{ratio:,.1f}x",
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write(
    path: Path,
    *,
    machine: dict[str, Any],
    config: dict[str, Any],
    figures: list[Figure],
    details: Any,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine,
        "config": config,
        "figures": {figure.key: figure.as_json() for figure in figures},
        "details": details,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
