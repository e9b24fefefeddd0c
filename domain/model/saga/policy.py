"""How long a step's attempt may take and how many attempts, how far apart, it gets (`SagaPolicy`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from domain.model.saga.steps import Step


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    reserve_timeout: timedelta = timedelta(seconds=10)
    confirm_timeout: timedelta = timedelta(seconds=5)
    shipment_timeout: timedelta = timedelta(seconds=5)
    compensation_timeout: timedelta = timedelta(seconds=5)
    max_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=1)

    def timeout(self, step: Step) -> timedelta:
        return {
            Step.RESERVE_STOCK: self.reserve_timeout,
            Step.CONFIRM_ORDER: self.confirm_timeout,
            Step.CREATE_SHIPMENT: self.shipment_timeout,
        }.get(step, self.compensation_timeout)

    def backoff(self, failed_attempt: int) -> timedelta:
        return self.retry_backoff * failed_attempt
