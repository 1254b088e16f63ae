"""GET /metrics: Prometheus text, read from the database at each scrape (the database is the truth;
the server keeps no counters of its own, so several servers on one database agree)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from jobrunner.errors import JobrunnerError
from jobrunner.serve.schemas import ERRORS

router = APIRouter(tags=["status"], responses=ERRORS)
RECENT_S = 60.0  # the window of the "finished lately" figures


class StoreCollector:
    """A prometheus_client collector that reads the figures from the store when scraped."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration: the figures come from the database

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from jobrunner.store import queries, serving

        up = GaugeMetricFamily("jobrunner_database_up", "1 when the database answered this scrape")
        try:
            now = time.time()
            stats = queries.stats(self.store)
            finished = serving.finished_since(self.store, now - RECENT_S)
            oldest = serving.oldest_queued(self.store)
            daemons = queries.daemons(self.store, now)
        except JobrunnerError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("jobrunner_jobs", "Jobs by queue and status", labels=["queue", "status"])
        for queue, figures in stats["queues"].items():
            for status, count in figures["by_status"].items():
                jobs.add_metric([queue, status], count)
        yield jobs
        total = GaugeMetricFamily("jobrunner_jobs_by_status", "Jobs by status, every queue", labels=["status"])
        for status, count in stats["by_status"].items():
            total.add_metric([status], count)
        yield total
        recent = GaugeMetricFamily(
            "jobrunner_jobs_finished_last_minute", "Jobs that ended in the last 60 s, by final status "
            "(dead: failed for good)", labels=["status"])  # fmt: skip
        for status, count in finished.items():
            recent.add_metric([status], count)
        yield recent
        paused = GaugeMetricFamily("jobrunner_queue_paused", "1 for a paused queue", labels=["queue"])
        for queue, figures in stats["queues"].items():
            paused.add_metric([queue], 1 if figures["paused"] else 0)
        yield paused
        age = GaugeMetricFamily("jobrunner_oldest_queued_seconds",
                                "How long the oldest queued job of each queue has been ready to run", labels=["queue"])  # fmt: skip
        for queue, since in oldest.items():
            age.add_metric([queue], max(now - since, 0.0))
        yield age
        alive = [d for d in daemons if d["alive"]]
        yield GaugeMetricFamily("jobrunner_daemons_alive", "Daemons with a fresh heartbeat", value=len(alive))
        yield GaugeMetricFamily("jobrunner_workers", "Worker processes of the live daemons",
                                value=sum(d["workers"] for d in alive))  # fmt: skip
        yield GaugeMetricFamily("jobrunner_workers_busy", "Workers running a job", value=sum(d["busy"] for d in alive))


@router.get(
    "/metrics", summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}},
)  # fmt: skip
def metrics(request: Request) -> Any:
    """Jobs by queue and status, jobs finished (and dead) in the last minute, the oldest queued
    job's age per queue, paused queues, live daemons and their workers."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


def registry(store: Any) -> Any:
    from prometheus_client import CollectorRegistry

    found = CollectorRegistry(auto_describe=False)
    found.register(StoreCollector(store))
    return found
