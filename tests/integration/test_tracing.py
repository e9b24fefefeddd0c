"""OpenTelemetry spans per saga and step, from an in-memory exporter; and no OpenTelemetry at all
unless tracing is asked for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from domain.model.saga import Participant
from tests.integration.staging import Stage, start_stage
from tests.polling import eventually

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra: pip install -e '.[otel]'")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402

from api.observability.tracing import SagaTracer  # noqa: E402

SECOND = 1_000_000_000


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[tuple[Stage, InMemorySpanExporter, SagaTracer]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stage = await start_stage(f"sqlite+aiosqlite:///{tmp_path / 'traces.db'}")
    tracer = SagaTracer(provider.get_tracer("test"))
    stage.svc.orchestrator.add_listener(tracer)
    await stage.stock()
    yield stage, exporter, tracer
    await stage.svc.stop()


async def spans_of(exporter: InMemorySpanExporter, saga_id: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The saga's span and its steps', once the saga's has ended: the read model may show the saga
    ended a moment before the tracer hears of the commit (it runs once the commit has returned)."""

    def of_the_saga() -> list[ReadableSpan]:
        finished = exporter.get_finished_spans()
        return [s for s in finished if s.attributes and s.attributes["saga.id"] == saga_id]

    await eventually(lambda: any(s.name == "order saga" for s in of_the_saga()), "the saga's span to end")
    spans = of_the_saga()
    [saga] = [s for s in spans if s.name == "order saga"]
    steps = [s for s in spans if s is not saga]
    assert saga.context is not None
    assert all(s.parent is not None and s.parent.span_id == saga.context.span_id for s in steps)
    return saga, steps


async def test_a_saga_span_holds_a_span_per_step(
    traced: tuple[Stage, InMemorySpanExporter, SagaTracer],
) -> None:
    stage, exporter, tracer = traced
    completed = await stage.order(1)
    saga, steps = await spans_of(exporter, completed)
    assert [s.name for s in steps] == ["CREATE_ORDER", "RESERVE_STOCK", "CONFIRM_ORDER", "CREATE_SHIPMENT"]
    assert saga.attributes is not None and saga.attributes["saga.status"] == "COMPLETED"
    assert saga.status.status_code is StatusCode.UNSET

    # Dispatching the shipment later opens no span that would never end.
    order = await stage.svc.read.order((await stage.svc.read.saga(completed)).order_id)  # type: ignore[union-attr]
    assert order is not None
    await stage.svc.orchestrator.dispatch_shipment(completed, order.shipment_id)
    assert tracer.open_spans == 0
    assert len([s for s in exporter.get_finished_spans() if s.name == "order saga"]) == 1


async def test_failures_show_on_the_step_and_the_saga(
    traced: tuple[Stage, InMemorySpanExporter, SagaTracer],
) -> None:
    stage, exporter, _ = traced
    stage.gate.refusals[Participant.ORDERS] = 3
    failed = await stage.order(1)
    saga, steps = await spans_of(exporter, failed)
    assert [s.name for s in steps] == [
        "CREATE_ORDER",
        "RESERVE_STOCK",
        "CONFIRM_ORDER",
        "RELEASE_STOCK",
        "CANCEL_ORDER",
    ]
    confirm = steps[2]
    assert confirm.status.status_code is StatusCode.ERROR
    assert confirm.attributes is not None and confirm.attributes["step.attempts"] == 3
    assert confirm.end_time is not None and confirm.start_time is not None
    assert confirm.end_time - confirm.start_time == 3 * SECOND  # 1 s and 2 s pauses between attempts
    assert [e.name for e in saga.events] == ["StepFailed"] * 3 + ["CompensationStarted"]
    assert saga.status.status_code is StatusCode.ERROR
    assert saga.status.description == "CONFIRM_ORDER failed after 3 attempts: ORDERS is down"


def test_nothing_imports_opentelemetry_unless_tracing_is_asked_for(tmp_path: Path) -> None:
    program = f"""
import sys
from api.web.app import create_app
from api.cli import main
from api.service import Service
from api.settings import Settings
create_app(Service(Settings(database_url="sqlite+aiosqlite:///{tmp_path / "off.db"}")))
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "opentelemetry was imported"
Service(Settings(database_url="sqlite+aiosqlite:///{tmp_path / "on.db"}", otel=True))
assert "opentelemetry.sdk.trace" in sys.modules
"""
    subprocess.run([sys.executable, "-c", program], check=True, cwd=Path(__file__).parents[2])
