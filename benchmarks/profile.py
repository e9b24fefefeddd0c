"""Where a saga's CPU goes: one cell run under py-spy, its samples sorted into buckets, given as CPU
ms per saga per bucket; with --compare, a chart of the buckets beside an earlier profile's.

    python -m benchmarks.profile --label after --json after.json [--mode engine|full] [--sagas 2000]
    python -m benchmarks.profile --label before --json before.json --checkout DIR   # another revision
    python -m benchmarks.profile --label after --json after.json --compare before.json --chart cpu.png

The cell (`benchmarks.engine`, or `benchmarks.fullstack` whose served process alone is counted) runs
at concurrency 64 on SQLite from `--checkout` (this tree by default), so two revisions are profiled
by the same command. A sample belongs to the bucket of its innermost frame that one names (time
inside the database driver shows as the innermost Python frame that called it: SQLAlchemy's
`do_execute`, or `Prepared.run`); its share of the samples times the cell's CPU per saga is the
bucket's CPU per saga. Start-up's samples and those of threads waiting are left out (`WAITS`);
stocking's and the cell's warm-up sagas' remain (a cell from before the warm-up has none), while the
CPU per saga they are scaled to is the timed window's, so the shares follow CPU closely, not
exactly.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

# (bucket, what a frame's text contains): the first rule that a frame matches, innermost frame first.
RULES = (
    # On SQLite the hot statements reach sqlite3 from `Prepared.run`, whose own Python is a few lines.
    ("database driver", "Prepared.run (persistence/prepared.py"),
    ("database driver", "do_execute ("),
    ("database driver", "do_executemany ("),
    ("database driver", "do_commit ("),
    ("SQLAlchemy", "sqlalchemy/"),
    ("folding saga state", "domain/model/saga/"),
    ("orchestrator", "domain/"),
    ("journal, projection, participants", "persistence/"),
    ("GraphQL (strawberry, graphql-core)", "strawberry/"),
    ("GraphQL (strawberry, graphql-core)", "graphql/"),
    ("HTTP and WebSocket (starlette, uvicorn)", "starlette/"),
    ("HTTP and WebSocket (starlette, uvicorn)", "uvicorn/"),
    ("HTTP and WebSocket (starlette, uvicorn)", "httptools/"),
    ("HTTP and WebSocket (starlette, uvicorn)", "websockets/"),
    ("the service's edge (api/)", "api/"),
    ("asyncio", "asyncio/"),
)
OTHER = "other"
# Samples that are no CPU of the measured window, left out: start-up (imports), and threads waiting
# inside a C call that py-spy's idle detection does not see as waiting (an event loop's poll, a
# worker thread's queue).
START_UP = "importlib._bootstrap"
WAITS = (
    "select (selectors.py",
    "Runner.run (asyncio/runners.py",  # uvloop's loop polls in C under this frame
    # Innermost, these loops are between work items: the items run in frames below them.
    "_worker (concurrent/futures/thread.py",
    "_connection_worker_thread (aiosqlite/core.py",
)
BUCKETS = tuple(dict.fromkeys(bucket for bucket, _ in RULES)) + (OTHER,)


def bucket_of(frames: list[str]) -> str:
    """The bucket of one sample, its frames outermost first (as py-spy's raw format lists them)."""
    for frame in reversed(frames):
        for bucket, marker in RULES:
            if marker in frame:
                return bucket
    return OTHER


def shares(raw: str, only_process: str | None = None) -> dict[str, float]:
    """Each bucket's share of the samples in py-spy's raw output (`frame;frame;... count` lines);
    with `only_process`, of the samples of processes whose command line contains it."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        processes = [f for f in frames if f.startswith("process ")]  # outermost parent first
        if only_process is not None and not (processes and only_process in processes[-1]):
            continue
        if any(wait in frames[-1] for wait in WAITS) or any(START_UP in frame for frame in frames):
            continue
        counts[bucket_of(frames)] += int(count)
    total = sum(counts.values())
    return {bucket: counts[bucket] / total for bucket in BUCKETS} if total else {}


def profile(mode: str, sagas: int, checkout: Path) -> dict[str, Any]:
    """Run the cell under py-spy; its figures, and each bucket's CPU ms per saga."""
    module, cpu_key = ("benchmarks.engine", "cpu_s_per_saga")
    if mode == "full":
        module, cpu_key = ("benchmarks.fullstack", "server_cpu_s_per_saga")
    with tempfile.TemporaryDirectory(prefix="ordersaga-profile-") as tmp:
        raw, cell = Path(tmp) / "raw.txt", Path(tmp) / "cell.json"
        command = [sys.executable, "-m", module, "--concurrency", "64", "--sagas", str(sagas)]
        if mode == "full":
            command += ["--ceiling-seconds", "0.1"]  # the trivial-query load after the sagas, kept short
        subprocess.run(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "--rate",
                "250",
                "--subprocesses",
                "-o",
                str(raw),
            ]
            + ["--", *command, "--json", str(cell)],
            cwd=checkout,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        figures = json.loads(cell.read_text())
        split = shares(raw.read_text(), "api.cli" if mode == "full" else None)
    cpu_ms = figures[cpu_key] * 1000
    return {
        "mode": mode,
        "cell": figures,
        "cpu_ms_per_saga": cpu_ms,
        "buckets_ms_per_saga": {bucket: round(share * cpu_ms, 4) for bucket, share in split.items()},
    }


def draw(profiles: dict[str, dict[str, Any]], path: Path) -> None:
    """Stacked bars, one per labelled profile: CPU ms per saga by bucket."""
    from matplotlib.figure import Figure  # half a second to import: here, not where the module is

    figure = Figure(figsize=(8, 5))
    ax = figure.subplots()
    labels = list(profiles)
    bottoms = [0.0] * len(labels)
    for bucket in BUCKETS:
        heights = [profiles[label]["buckets_ms_per_saga"].get(bucket, 0.0) for label in labels]
        ax.bar(labels, heights, bottom=bottoms, label=bucket)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    mode = next(iter(profiles.values()))["mode"]
    ax.set(title=f"CPU per saga by bucket ({mode}, 64 concurrent, SQLite)", ylabel="CPU ms per saga")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("engine", "full"), default="engine")
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--checkout", type=Path, default=Path.cwd(), help="the tree whose cell runs")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--json", type=Path, help="write this profile here")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="earlier profiles (--json)")
    parser.add_argument("--chart", type=Path, help="write the chart of the profiles here (PNG)")
    args = parser.parse_args()
    mine = profile(args.mode, args.sagas, args.checkout) | {"label": args.label}
    if args.json:
        args.json.write_text(json.dumps(mine, indent=2) + "\n")
    earlier = [json.loads(path.read_text()) for path in args.compare]
    if args.chart:
        draw({p["label"]: p for p in [*earlier, mine]}, args.chart)
    for p in [*earlier, mine]:
        print(f"{p['label']}: {p['cpu_ms_per_saga']:.2f} ms per saga")
        for bucket, ms in p["buckets_ms_per_saga"].items():
            print(f"  {bucket:45} {ms:.3f}")


if __name__ == "__main__":
    main()
