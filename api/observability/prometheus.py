"""Prometheus metrics, in a registry of the service's own: saga counters and duration histograms fed
by an orchestrator listener, and the persistence layer's counters read when scraped. Every sample
carries an `instance` label naming the process: each process counts only what it did itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.observability.changes import finished_steps, settled
from api.outbound.relaying import RelayState
from domain.model.saga import TURNING_BACK, SagaChange, SagaStatus, StepTimedOut
from persistence.metrics import StoreMetrics
from persistence.read.projection import milliseconds

if TYPE_CHECKING:
    from api.outbound.stream import StreamRelay

# Seconds: a step takes milliseconds when all is well, and up to minutes through timeouts and retries.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Seconds: a warehouse nearby answers a command in a millisecond or two.
COMMAND_BUCKETS = (0.001, 0.0025, *BUCKETS)


class PrometheusMetrics:
    def __init__(self, store: StoreMetrics, running_sagas: Callable[[], int], instance: str) -> None:
        self.registry = CollectorRegistry()
        self._labelled = CollectorRegistry()
        self._labelled.register(_Labelled(self.registry, {"instance": instance}))

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"ordersaga_{name}", doc, registry=self.registry)

        self._started = counter("sagas_started", "Sagas started.")
        self._completed = counter("sagas_completed", "Sagas that completed.")
        self._failed = counter("sagas_failed", "Sagas that failed (after compensating).")
        self._parked = counter("sagas_needing_attention", "Sagas parked for an operator.")
        self._compensated = counter("sagas_compensated", "Sagas that began compensating.")
        self._timed_out = counter("sagas_timed_out", "Step attempts that passed their deadline.")
        self._saga_seconds = Histogram(
            "ordersaga_saga_duration_seconds",
            "From a saga's start to COMPLETED or FAILED, as the journal records them: a saga that its "
            "placement's transaction ended (SQLite) observes 0.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._step_seconds = Histogram(
            "ordersaga_step_duration_seconds",
            "From a step's first attempt to its end, retries included, as the journal records them: "
            "steps run in one transaction (chained) share its time, so they observe 0.",
            ["step"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._command_seconds = Histogram(
            "ordersaga_warehouse_command_seconds",
            "From sending a command to a remote warehouse service to its answer (or to the timeout or "
            "connection error that stood for one), each attempt on its own, by warehouse, command type "
            "(CreateShipment, CancelShipment) and outcome (CREATED, CANCELLED, ACCEPTED, REJECTED, "
            "UNAVAILABLE).",
            ["warehouse", "type", "outcome"],
            buckets=COMMAND_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store, running_sagas))
        # Each step's histogram, found once: `labels` checks and locks on every call.
        self._step_histograms: dict[str, Histogram] = {}

    def watch_relay(self, relay: StreamRelay) -> None:
        """Report `relay`'s state and position at every scrape."""
        self.registry.register(_RelayCollector(relay))

    def render(self) -> bytes:
        return generate_latest(self._labelled)

    def observe_command(self, warehouse: str, command_type: str, outcome: str, seconds: float) -> None:
        """The warehouse service's listener (api/outbound/warehouse.py's CommandListener)."""
        self._command_seconds.labels(warehouse, command_type, outcome).observe(seconds)

    def _step_histogram(self, step: str) -> Histogram:
        histogram = self._step_histograms.get(step)
        if histogram is None:
            histogram = self._step_histograms[step] = self._step_seconds.labels(step)
        return histogram

    def observe(self, change: SagaChange) -> None:
        """The orchestrator's listener: runs after every commit, so it only counts what changed."""
        if change.before is None:
            self._started.inc()
        for event in change.events:
            if isinstance(event, StepTimedOut):
                self._timed_out.inc()
            elif isinstance(event, TURNING_BACK):
                self._compensated.inc()
        for record in finished_steps(change):
            assert record.finished_at is not None
            seconds = milliseconds(record.started_at, record.finished_at) / 1000
            self._step_histogram(record.step.value).observe(seconds)
        if not settled(change):
            return
        after = change.after
        if after.status is SagaStatus.NEEDS_ATTENTION:
            self._parked.inc()
            return
        (self._completed if after.status is SagaStatus.COMPLETED else self._failed).inc()
        self._saga_seconds.observe(milliseconds(after.started_at, after.updated_at) / 1000)


class _Labelled(Collector):
    """Another registry's metrics, with these labels added to every sample."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s._replace(labels={**s.labels, **self._labels}) for s in metric.samples]
            yield metric


class _StoreCollector(Collector):
    """Reads the persistence layer's plain counters at scrape time: nothing on the hot path."""

    def __init__(self, store: StoreMetrics, running_sagas: Callable[[], int]) -> None:
        self._store = store
        self._running_sagas = running_sagas

    def collect(self) -> Iterator[Metric]:
        store = self._store
        for name, doc, value in [
            ("commits", "Database transactions committed by the group-commit runner.", store.commits),
            (
                "committed_work",
                "Units of work in those commits (their sum of batch sizes).",
                store.committed_work,
            ),
            ("isolated_batches", "Batches rolled back and rerun one unit at a time.", store.isolated_batches),
            ("stock_reservations", "Stock reservations attempted.", store.stock_reservations),
            (
                "stock_conflicts",
                "Compare-and-swap conflicts on stock rows, each retried.",
                store.stock_conflicts,
            ),
            (
                "stock_conflicts_exhausted",
                "Reservations that stayed contended through every retry.",
                store.stock_conflicts_exhausted,
            ),
        ]:
            yield CounterMetricFamily(f"ordersaga_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "ordersaga_running_sagas", "Sagas with a driver in this process.", self._running_sagas()
        )


class _RelayCollector(Collector):
    """An outbound relay's state, one sample per state with 1 for the one it is in (alert on
    `ordersaga_relay_state{state="behind"} == 1` lasting), and how far it has published."""

    def __init__(self, relay: StreamRelay) -> None:
        self._relay = relay

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "ordersaga_relay_state",
            "1 for the state the relay is in: current, behind (events wait in the journal), standby "
            "(another process publishes) or starting.",
            labels=["relay", "state"],
        )
        for each in RelayState:
            state.add_metric([self._relay.name, each.value], float(each is self._relay.state))
        yield state
        position = GaugeMetricFamily(
            "ordersaga_relay_position",
            "The journal position the relay has published up to, as this process last knew it.",
            labels=["relay"],
        )
        position.add_metric([self._relay.name], self._relay.position)
        yield position
