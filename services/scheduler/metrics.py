"""The scheduler's Prometheus metrics (default registry, served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TICKS = Counter(
    "crmsync_scheduler_ticks_total",
    "Ticks this replica recorded, by job and outcome (emitted, missed). Summed over "
    "replicas, each tick counts once.",
    ["job", "outcome"],
)
MANUAL_RUNS = Counter(
    "crmsync_scheduler_manual_runs_total", "Runs triggered through the admin API.", ["job"]
)
NEXT_TICK_SECONDS = Gauge(
    "crmsync_scheduler_next_tick_seconds", "Seconds until the job's next tick.", ["job"]
)
PRUNED_ROWS = Counter(
    "crmsync_scheduler_pruned_rows_total",
    "Rows deleted past the retention, by table (job_runs, processed_messages).",
    ["table"],
)
TICK_ROUND_FAILURES = Counter(
    "crmsync_scheduler_round_failures_total",
    "Tick rounds that failed (database unreachable ...) and will be retried.",
)
