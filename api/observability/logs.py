"""Structured logs: every line about a saga carries its id (and the step in hand), in text or JSON.

The orchestrator keeps the saga and step of the task at work in context variables; a filter on the
handler copies them onto each record, so no log call has to pass them along. `log_change` is the
orchestrator listener that tells, line by line, what happened to each saga.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import IO

from pythonjsonlogger.json import JsonFormatter

from api.observability.changes import settled
from domain.model.saga import (
    CompensationStarted,
    CustomerCancelled,
    SagaAborted,
    SagaChange,
    SagaParked,
    SagaRetried,
    SagaStatus,
    ShipmentDispatched,
    ShipmentRejected,
    Step,
    StepFailed,
    StepTimedOut,
)
from domain.orchestration.context import current_saga, current_step

LOG_FORMATS = ("text", "json")
_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The innermost frames a logged traceback shows: one record stays a few screens at most, also for an
# error many frames deep (a recursion that ran out of stack writes thousands of lines otherwise).
MAX_FRAMES = 40

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

log = logging.getLogger("ordersaga.saga")


class SagaContext(logging.Filter):
    """Adds `saga_id` and `step` to records logged while a saga is in hand."""

    def filter(self, record: logging.LogRecord) -> bool:
        saga_id = current_saga.get()
        if saga_id is not None and not hasattr(record, "saga_id"):
            record.saga_id = saga_id
            record.step = current_step.get()
        return True


class InstanceLabel(logging.Filter):
    """Adds `instance`, the process's name among several over one database, to every record."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self._instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self._instance
        return True


def bounded_traceback(ei: ExcInfo) -> str:
    """The traceback of `ei` as logging formats it, with the innermost MAX_FRAMES frames of each
    exception in the chain, and a line that says how many outer ones were left out."""
    kind, error, tb = ei
    if kind is None or error is None:
        return "NoneType: None"
    depth, frame = 0, tb
    while frame is not None:
        depth, frame = depth + 1, frame.tb_next
    lines = traceback.TracebackException(kind, error, tb, limit=-MAX_FRAMES).format()
    text = "".join(lines).rstrip("\n")
    if depth > MAX_FRAMES:
        text = f"({depth - MAX_FRAMES} outer frames left out of {depth})\n{text}"
    return text


class BoundedTracebacks(logging.Formatter):
    """A formatter whose tracebacks are `bounded_traceback`'s: mixed into each of the formats."""

    def formatException(self, ei: ExcInfo) -> str:
        return bounded_traceback(ei)


class BoundedJsonFormatter(BoundedTracebacks, JsonFormatter):
    pass


class TextFormatter(BoundedTracebacks):
    """The plain line, then `instance=…`, then `saga_id=… step=…` when the record is about a saga."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        instance = getattr(record, "instance", None)
        if instance is not None:
            line = f"{line} instance={instance}"
        saga_id = getattr(record, "saga_id", None)
        if saga_id is None:
            return line
        step = getattr(record, "step", None)
        return f"{line} saga_id={saga_id}" + (f" step={step}" if step else "")


def log_handler(
    log_format: str, stream: IO[str] | None = None, instance: str | None = None
) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(SagaContext())
    if instance is not None:
        handler.addFilter(InstanceLabel(instance))
    handler.setFormatter(BoundedJsonFormatter(_FIELDS) if log_format == "json" else TextFormatter(_FIELDS))
    return handler


def configure_logging(
    log_format: str = "text", instance: str | None = None, level: int = logging.INFO
) -> None:
    logging.basicConfig(level=level, handlers=[log_handler(log_format, instance=instance)], force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request at INFO: a line per outbound request (api/outbound/http.py's client),
    # which the adapters' own records tell where it matters, at a cost in CPU on a busy path.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def log_change(change: SagaChange) -> None:
    """The orchestrator's listener: a line for each failure, compensation and outcome of a saga."""
    after = change.after
    about = {"saga_id": after.saga_id}
    if change.before is None:
        log.debug("saga started for order %s", after.order_id, extra={**about, "step": None})
    for event in change.events:
        match event:
            case StepFailed(step, attempt, reason, _, retry_at, _) | StepTimedOut(
                step, attempt, reason, retry_at, _
            ):
                then = "will retry" if retry_at else "no attempts left"
                what = "timed out" if isinstance(event, StepTimedOut) else "failed"
                log.warning(
                    "%s attempt %d %s (%s): %s",
                    step.value,
                    attempt,
                    what,
                    then,
                    reason,
                    extra={**about, "step": step.value},
                )
            case CompensationStarted(reason, _):
                log.warning("compensating: %s", reason, extra={**about, "step": None})
            case SagaAborted(reason, _):
                log.warning("aborted by an operator, compensating: %s", reason, extra={**about, "step": None})
            case CustomerCancelled(_, reason):
                log.info("compensating: %s", reason, extra={**about, "step": None})
            case SagaRetried():
                log.info("retried by an operator", extra={**about, "step": None})
            case SagaParked(reason, _):
                log.error("needs an operator: %s", reason, extra={**about, "step": None})
            case ShipmentDispatched(shipment_id, _):
                log.debug("shipment %s dispatched", shipment_id, extra={**about, "step": None})
            case ShipmentRejected(shipment_id, reason, _):
                shipping = {**about, "step": Step.CREATE_SHIPMENT.value}
                log.warning("shipment %s refused: %s", shipment_id, reason, extra=shipping)
    if settled(change) and after.is_terminal:
        # A saga's normal course (started, completed, dispatched) is DEBUG, so that a steady load
        # logs nothing per saga at INFO; what went wrong is WARNING or worse.
        level = logging.DEBUG if after.status is SagaStatus.COMPLETED else logging.WARNING
        log.log(level, "saga %s", after.status.value.lower(), extra={**about, "step": None})
