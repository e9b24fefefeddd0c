"""OpenTelemetry traces: a span per saga and, within it, one per step, made from committed
SagaChanges. Optional (the `otel` extra): only `serve --otel` (or OTEL_EXPORTER_OTLP_* settings)
imports this module.

Steps get their spans when they end, with the start and end times the journal recorded, so nothing
but the open saga spans of sagas in flight is held in memory. A saga resumed after a restart opens a
new saga span, back-dated to the saga's start.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from api.observability.changes import finished_steps, settled
from domain.model.saga import (
    TURNING_BACK,
    SagaChange,
    SagaParked,
    SagaStatus,
    StepFailed,
    StepStatus,
    StepTimedOut,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SagaTracer:
    """The orchestrator's listener that turns saga changes into spans."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._open: dict[str, Span] = {}

    @property
    def open_spans(self) -> int:
        """Sagas whose span is open: started, not yet settled."""
        return len(self._open)

    def __call__(self, change: SagaChange) -> None:
        state = change.after
        if change.before is not None and change.before.is_terminal and state.is_terminal:
            return  # a completed saga's shipment dispatched: its span has ended, nothing to open
        span = self._open.get(state.saga_id)
        if span is None:
            span = self._tracer.start_span(
                "order saga",
                start_time=_ns(state.started_at),
                attributes={
                    "saga.id": state.saga_id,
                    "order.id": state.order_id,
                    "customer.id": state.customer_id,
                },
            )
            self._open[state.saga_id] = span
        for event in change.events:
            if isinstance(event, (StepFailed, StepTimedOut, SagaParked, *TURNING_BACK)):
                step = getattr(event, "step", None)
                reason = event.reason
                attributes = {"reason": reason, **({"step": step.value} if step else {})}
                span.add_event(event.type_name, attributes, timestamp=_ns(event.at))
        parent = trace.set_span_in_context(span)
        for record in finished_steps(change):
            assert record.finished_at is not None
            step_span = self._tracer.start_span(
                record.step.value,
                context=parent,
                start_time=_ns(record.started_at),
                attributes={"saga.id": state.saga_id, "step.attempts": record.attempts},
            )
            if record.status is not StepStatus.SUCCEEDED:
                step_span.set_status(Status(StatusCode.ERROR, record.last_error))
            step_span.end(end_time=_ns(record.finished_at))
        if settled(change):
            del self._open[state.saga_id]
            span.set_attribute("saga.status", state.status.value)
            if state.status is not SagaStatus.COMPLETED:
                span.set_status(Status(StatusCode.ERROR, state.failure_reason))
            span.end(end_time=_ns(state.updated_at))


def install_tracing() -> SagaTracer:
    """A SagaTracer on the process's tracer provider. Unless one is installed already (say by
    `opentelemetry-instrument`), spans go over OTLP/HTTP, configured by the standard OTEL_* settings."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "ordersaga")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    return SagaTracer(trace.get_tracer("ordersaga"))


def _ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
