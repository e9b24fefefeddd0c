"""The benchmark's chart: sagas/s against concurrency for ordersaga and DBOS (one panel per workload,
SQLite solid, PostgreSQL dashed), and the CPU each side spends per saga.

    python -m benchmarks.chart results.json docs/benchmarks.png   # from `benchmarks.run --json`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Each side: how it is labelled, and where its CPU per saga is in a cell.
SIDES = {
    "engine": ("ordersaga engine", "cpu_s_per_saga"),
    "full": ("ordersaga full stack (server)", "server_cpu_s_per_saga"),
    "dbos": ("DBOS (datasource steps)", "cpu_s_per_saga"),
    "dbos_plain": ("DBOS (plain steps)", "cpu_s_per_saga"),
}
STYLES = {"sqlite": "-", "postgresql": "--"}


def draw(results: dict[str, Any], path: Path) -> None:
    """Write the chart of `results` (as `benchmarks.run` gathers them) to `path` as a PNG."""
    from matplotlib.figure import Figure  # half a second to import: here, not where the module is

    cells = results["cells"]
    workloads = list(dict.fromkeys(c["workload"] for c in cells))
    figure = Figure(figsize=(6 * (len(workloads) + 1), 5))
    axes = figure.subplots(1, len(workloads) + 1)
    colours = {side: f"C{i}" for i, side in enumerate(SIDES)}
    for ax, workload in zip(axes, workloads, strict=False):
        for database, style in STYLES.items():
            mine = sorted(
                (c for c in cells if c["workload"] == workload and c["database"] == database),
                key=lambda c: c["concurrency"],
            )
            if not mine:
                continue
            levels = [c["concurrency"] for c in mine]
            for side, (label, _) in SIDES.items():
                ax.plot(
                    levels,
                    [c[side]["sagas_per_s"] for c in mine],
                    style,
                    marker="o",
                    color=colours[side],
                    label=f"{label}, {database}",
                )
        ax.set(title=f"{workload} SKUs: sagas/s", xlabel="concurrent sagas", ylabel="sagas/s", yscale="log")
        ax.set_xscale("log", base=2)
        levels = sorted({c["concurrency"] for c in cells})
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    _cpu_per_saga(axes[-1], cells, colours)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _cpu_per_saga(ax: Any, cells: list[dict[str, Any]], colours: dict[str, str]) -> None:
    """Grouped bars: per (database, concurrency) of the uniform workload, each side's CPU ms per saga."""
    groups = sorted(
        (c for c in cells if c["workload"] == cells[0]["workload"]),
        key=lambda c: (c["database"], c["concurrency"]),
    )
    width = 0.8 / len(SIDES)
    for i, (side, (label, key)) in enumerate(SIDES.items()):
        ax.bar(
            [g + i * width for g in range(len(groups))],
            [c[side][key] * 1000 for c in groups],
            width,
            color=colours[side],
            label=label,
        )
    ax.set_xticks(
        [g + 0.4 - width / 2 for g in range(len(groups))],
        [f"{c['database']}\nc={c['concurrency']}" for c in groups],
    )
    ax.set(title=f"CPU per saga ({cells[0]['workload']} SKUs)", ylabel="CPU ms per saga", yscale="log")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    # Below the bars, which a legend inside would hide.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, help="the JSON that `benchmarks.run --json` wrote")
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    draw(json.loads(args.results.read_text()), args.png)


if __name__ == "__main__":
    main()
