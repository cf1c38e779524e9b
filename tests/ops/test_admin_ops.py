"""The operations routes of the admin API: viewer reads, operator acts, bad input 4xx."""

from __future__ import annotations

from tests.conftest import ADMIN_TOKEN, scheduler_settings

VIEWER, OPERATOR = "test-viewer-token-0123456789", "test-operator-token-0123456789"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_viewers_read_operators_act_and_bad_bodies_name_the_field(
    http, make_scheduler_app, database, namespace
) -> None:
    settings = scheduler_settings(database, namespace, admin_viewer_token=VIEWER,
                                  admin_operator_token=OPERATOR)  # fmt: skip
    url, app = await make_scheduler_app(settings, run_loop=False)
    from services.scheduler.keys import scheduler_key

    await app[scheduler_key].broker.wait_ready()
    async with http.get(f"{url}/v1/dead-letters", headers=auth(VIEWER)) as resp:
        assert resp.status == 200
        queues = {q["queue"]: q for q in (await resp.json())["queues"]}
    assert queues["syncer.orders.dead"]["count"] == 0
    assert "syncer.jobs.hubspot_batch_sync.dead" in queues
    async with http.get(f"{url}/v1/dead-letters/syncer.orders.dead?limit=5",
                        headers=auth(VIEWER)) as resp:  # fmt: skip
        assert resp.status == 200 and (await resp.json())["messages"] == []
    replay = f"{url}/v1/dead-letters/syncer.orders.dead/replay"
    async with http.post(replay, json={"all": True}, headers=auth(VIEWER)) as resp:
        assert resp.status == 403
    async with http.post(
        replay, json={"all": True, "dry_run": True}, headers=auth(OPERATOR)
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"replayed": [], "skipped": [], "dry_run": True}
    async with http.post(replay, json={"all": "yes"}, headers=auth(OPERATOR)) as resp:
        assert resp.status == 422 and (await resp.json())["errors"][0]["pointer"] == "/all"
    async with http.post(f"{url}/v1/dead-letters/nope.dead/purge", json={"ids": ["a"]},
                         headers=auth(OPERATOR)) as resp:  # fmt: skip
        assert resp.status == 404
    async with http.get(f"{url}/v1/actions?status=failed", headers=auth(VIEWER)) as resp:
        assert resp.status == 200 and (await resp.json()) == {"actions": []}
    async with http.get(f"{url}/v1/actions?status=broken", headers=auth(VIEWER)) as resp:
        assert resp.status == 422
    retry = f"{url}/v1/actions/retry"
    async with http.post(retry, json={"all_failed": True}, headers=auth(VIEWER)) as resp:
        assert resp.status == 403
    async with http.post(retry, json={"ids": [True]}, headers=auth(ADMIN_TOKEN)) as resp:
        assert resp.status == 422
    async with http.post(retry, json={"ids": [7.0]}, headers=auth(OPERATOR)) as resp:
        assert resp.status == 200 and (await resp.json()) == {"retried": []}
    async with http.get(f"{url}/v1/trace?q=nobody@example.test", headers=auth(VIEWER)) as resp:
        assert resp.status == 200 and (await resp.json())["entries"] == []
    async with http.get(f"{url}/v1/trace?q=", headers=auth(VIEWER)) as resp:
        assert resp.status == 422
    async with http.get(f"{url}/openapi.json") as resp:
        paths = (await resp.json())["paths"]
    assert {"/v1/dead-letters", "/v1/actions/retry", "/v1/trace"} <= set(paths)
