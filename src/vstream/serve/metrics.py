"""Prometheus metrics of the server (`/metrics`): stream counters read from the sessions at scrape time, and
histograms of the answers' latencies."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vstream.model.answer import Answer

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """The registry of one server and the metrics observed on the question path."""

    def __init__(self, sessions: Callable[[], list]) -> None:
        self.registry = CollectorRegistry()
        self.questions = Counter("vstream_questions", "Questions answered", ["route"], registry=self.registry)
        self.ttft = Histogram(
            "vstream_ttft_seconds",
            "Time to the first token of an answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answer_time = Histogram(
            "vstream_answer_seconds", "Time to the whole answer", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.registry.register(_SessionCollector(sessions))

    def answered(self, answer: Answer, route: str) -> None:
        """Count a finished answer and its latencies."""
        self.questions.labels(route=route).inc()
        self.ttft.observe(answer.ttft_s)
        self.answer_time.observe(answer.total_s)


class _SessionCollector(Collector):
    """Per-session stream counters, read when Prometheus scrapes."""

    def __init__(self, sessions: Callable[[], list]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        served = self.sessions()
        count = GaugeMetricFamily("vstream_sessions", "Sessions open")
        count.add_metric([], len(served))
        yield count
        label = ["session"]
        families = {
            "frames_read": CounterMetricFamily("vstream_frames_read", "Frames read from sources", labels=label),
            "frames_encoded": CounterMetricFamily("vstream_frames_encoded", "Frames in memory", labels=label),
            "frames_dropped": CounterMetricFamily("vstream_frames_dropped", "Frames dropped", labels=label),
        }
        lag = GaugeMetricFamily("vstream_frame_lag_seconds", "Median lag from arrival to memory", labels=label)
        pending = GaugeMetricFamily("vstream_pending_frames", "Frames waiting for the encoder", labels=label)
        for one in served:
            metrics = one.session.metrics
            for name, family in families.items():
                extra = one.push.dropped if name == "frames_dropped" and one.push is not None else 0
                family.add_metric([one.id], getattr(metrics, name) + extra)
            records = list(metrics.frames)
            if records:
                lags = sorted(r.lag_s for r in records)
                lag.add_metric([one.id], lags[len(lags) // 2])
            pending.add_metric([one.id], one.session.frame_handler.pending)
        yield from families.values()
        yield lag
        yield pending
