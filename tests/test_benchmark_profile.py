"""The profile's buckets: each sample goes to the bucket of its innermost frame that one names, and
the chart of two profiles is drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.profile import BUCKETS, OTHER, bucket_of, draw, shares

SERVER = 'process 10:"python -m benchmarks.fullstack";process 11:"python -c from api.cli import main"'
CLIENT = 'process 10:"python -m benchmarks.fullstack"'


@pytest.mark.parametrize(
    ("frames", "bucket"),
    [
        # Time in sqlite3's C code shows as SQLAlchemy's do_execute, the innermost Python frame.
        (
            [
                "run (persistence/write/group_commit.py:1)",
                "execute (sqlalchemy/engine/base.py:2)",
                "do_execute (sqlalchemy/engine/default.py:3)",
            ],
            "database driver",
        ),
        (
            ["run (persistence/write/group_commit.py:1)", "_compile (sqlalchemy/sql/compiler.py:2)"],
            "SQLAlchemy",
        ),
        # A standard-library frame names no bucket: the caller's decides.
        (
            [
                "_advance (domain/orchestration/orchestrator.py:1)",
                "evolve (domain/model/saga/fold.py:2)",
                "replace (dataclasses.py:3)",
            ],
            "folding saga state",
        ),
        (["_advance (domain/orchestration/orchestrator.py:1)", "dumps (json/__init__.py:2)"], "orchestrator"),
        (
            ["handle (starlette/routing.py:1)", "execute (graphql/execution/execute.py:2)"],
            "GraphQL (strawberry, graphql-core)",
        ),
        (["run (threading.py:1)"], OTHER),
    ],
)
def test_a_sample_goes_to_the_bucket_of_its_innermost_named_frame(frames: list[str], bucket: str) -> None:
    assert bucket_of(frames) == bucket


def test_shares_count_samples_and_can_keep_one_process() -> None:
    raw = "\n".join(
        [
            f"{SERVER};thread (1);evolve (domain/model/saga/fold.py:2) 3",
            f"{SERVER};thread (1);dispatch (starlette/routing.py:2) 1",
            f"{CLIENT};thread (1);request (aiohttp/client.py:2) 4",
        ]
    )
    everything = shares(raw)
    assert everything["folding saga state"] == 3 / 8 and everything[OTHER] == 4 / 8
    served = shares(raw, "api.cli")
    assert served["folding saga state"] == 3 / 4
    assert served["HTTP and WebSocket (starlette, uvicorn)"] == 1 / 4
    assert sum(served.values()) == pytest.approx(1)


def test_start_up_and_waiting_threads_are_left_out() -> None:
    raw = "\n".join(
        [
            f"{SERVER};thread (1);evolve (domain/model/saga/fold.py:2) 1",
            f"{SERVER};thread (1);_find_and_load (<frozen importlib._bootstrap>:1);x (api/cli.py:1) 5",
            f"{SERVER};thread (1);run (asyncio/runners.py:1);EpollSelector.select (selectors.py:468) 7",
            f"{SERVER};thread (2);_worker (concurrent/futures/thread.py:81) 9",
            f"{SERVER};thread (2);w (persistence/write/group_commit.py:1);"
            "Prepared.run (persistence/prepared.py:66) 1",
        ]
    )
    assert shares(raw) == {bucket: 0.0 for bucket in BUCKETS} | {
        "folding saga state": 1 / 2,
        "database driver": 1 / 2,
    }


def test_the_chart_of_two_profiles_is_a_png(tmp_path: Path) -> None:
    def made(ms: float) -> dict[str, object]:
        return {"mode": "engine", "buckets_ms_per_saga": {"SQLAlchemy": ms, OTHER: ms / 2}}

    draw({"before": made(1.0), "after": made(0.5)}, tmp_path / "cpu.png")
    assert (tmp_path / "cpu.png").read_bytes().startswith(b"\x89PNG")
