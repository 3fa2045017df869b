"""The outputs: ``bench/results/latest.json`` and a Markdown table (stdout, and the README)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.machine import one_line
from bench.section import Section


@dataclass
class SectionResult:
    section: Section
    figures: list[Figure]
    seconds: float


@dataclass
class Report:
    mode: str
    command: str
    started_at: str
    machine: dict[str, Any]
    config: dict[str, Any]
    settings: dict[str, Any]
    sections: list[SectionResult] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> list[Figure]:
        return [figure for result in self.sections for figure in result.figures]

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "mode": self.mode,
            "command": self.command,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "config": self.config,
            "settings": self.settings,
            "sections": [
                {
                    "key": result.section.key,
                    "title": result.section.title,
                    "notes": result.section.notes,
                    "seconds": round(result.seconds, 1),
                    "figures": [figure.as_json() for figure in result.figures],
                }
                for result in self.sections
            ],
            "targets": [
                {
                    "figure": figure.name,
                    "target": str(figure.target),
                    "median": figure.median,
                    "met": figure.met,
                }
                for figure in self.figures()
                if figure.target is not None
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")


def fmt(value: float, unit: str) -> str:
    if unit in ("x", "score"):
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _target_cell(figure: Figure) -> str:
    if figure.target is None:
        return ""
    return f"{figure.target} {'met' if figure.met else '**missed**'}"


def markdown(report: Report) -> str:
    minutes, seconds = divmod(round(report.seconds), 60)
    lines = [
        f"memscribe benchmark, {report.mode} run of {report.started_at} "
        f"({minutes} min {seconds} s): `{report.command}`",
        "",
        f"Machine: {one_line(report.machine)}.",
        "Each figure is the median of its repetitions (min and max beside it); a ratio is "
        "taken within each repetition, then summarized.",
    ]
    for result in report.sections:
        lines += [
            "",
            f"**{result.section.title}.** {result.section.notes}",
            "",
            "| figure | median | min | max | unit | reps | target |",
            "|---|--:|--:|--:|---|--:|---|",
        ]
        for figure in result.figures:
            lines.append(
                f"| {figure.label} | {fmt(figure.median, figure.unit)} "
                f"| {fmt(figure.min, figure.unit)} | {fmt(figure.max, figure.unit)} "
                f"| {figure.unit} | {figure.repetitions} | {_target_cell(figure)} |"
            )
        noted = [figure for figure in result.figures if figure.note]
        if noted:
            lines.append("")
            lines += [f"- {figure.label}: {figure.note}" for figure in noted]
    return "\n".join(lines) + "\n"
