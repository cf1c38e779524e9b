"""Per-queue prefetch, connection shares and deadlines from the syncer's settings."""

from __future__ import annotations

import pytest

from services.syncer.isolation import (
    check_queue_names,
    queue_db_connections,
    queue_deadline_s,
    queue_prefetch,
)
from services.syncer.main import consumer_plan
from shared import queues
from shared.jobs import HUBSPOT_BATCH_SYNC, JOB_QUEUES
from shared.settings import SyncerSettings


def settings(**values: object) -> SyncerSettings:
    return SyncerSettings(_env_file=None, **values)


def test_each_queue_holds_at_most_half_the_pool_by_default() -> None:
    assert queue_db_connections(settings(db_pool_max_size=10)) == 5
    assert queue_db_connections(settings(db_pool_max_size=5)) == 3
    assert queue_db_connections(settings(db_pool_max_size=1)) == 1
    assert queue_db_connections(settings(db_pool_max_size=10, queue_db_connections=8)) == 8
    assert queue_db_connections(settings(db_pool_max_size=4, queue_db_connections=8)) == 4


def test_prefetch_and_deadlines_can_be_set_per_queue() -> None:
    s = settings(
        prefetch_count=16,
        queue_prefetch={"syncer.logins": 4},
        handler_deadline_s=30,
        job_deadline_s=600,
        queue_deadlines_s={"syncer.credits": 5},
    )
    assert queue_prefetch(s, queues.LOGINS) == 4
    assert queue_prefetch(s, queues.CREDITS) == 16
    assert queue_prefetch(s, queues.HUBSPOT_CONTACTS) >= 100  # a full HubSpot batch
    assert queue_deadline_s(s, queues.CREDITS) == 5
    assert queue_deadline_s(s, queues.LOGINS) == 30
    assert queue_deadline_s(s, JOB_QUEUES[HUBSPOT_BATCH_SYNC]) == 600


def test_a_per_queue_setting_naming_no_queue_is_refused() -> None:
    s = settings(queue_prefetch={"syncer.login": 4})
    with pytest.raises(ValueError, match=r"syncer\.login"):
        check_queue_names(s, consumer_plan(s))
    check_queue_names(settings(), consumer_plan(settings()))
