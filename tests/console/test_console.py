"""The console in a real browser: log in, read the real figures, act, and be refused."""

from __future__ import annotations

import json
from typing import Any

import aio_pika

from services.scheduler.keys import scheduler_key
from shared import queues
from tests.conftest import AMQP_URL, eventually
from tests.console.conftest import OPERATOR, VIEWER, login, new_page, shot
from tests.helpers import queue_depth

PROBLEM = "application/problem+json"


async def publish(queue: str, n: int, *, dead: bool = False) -> None:
    """``n`` messages into ``queue`` (full name); with ``dead``, each is then rejected
    by a consumer so that RabbitMQ itself dead-letters it into ``<queue>.dead``."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for i in range(n):
            body = json.dumps({"poison": i}).encode()
            message = aio_pika.Message(body, message_id=f"console-test-{i}", type="test.poison")
            await channel.default_exchange.publish(message, routing_key=queue)
        if dead:
            q = await channel.get_queue(queue, ensure=False)
            for _ in range(n):
                got = await q.get(timeout=10)
                assert got is not None
                await got.reject(requeue=False)
    finally:
        await connection.close()


async def cell(page: Any, row: str, field: str) -> str:
    return (await page.locator(f"{row} [data-field={field}]").inner_text()).split()[0]


async def test_an_admin_logs_in_and_sees_the_real_queue_depths(browser, console, tmp_path) -> None:
    base, app = console
    topology = app[scheduler_key].broker.topology
    await publish(topology.queue(queues.CREDITS), 7)
    page = await new_page(browser)
    await page.goto(f"{base}/console")
    assert "/console/login" in page.url
    await shot(page, tmp_path, "login")
    await login(page, base)
    row = "#queue-table tr[data-queue='syncer.credits']"
    assert await cell(page, row, "messages") == "7"
    assert await cell(page, row, "consumers") == "0"
    assert await cell(page, row, "dead") == "0"
    assert "passive declares" in await page.inner_text("#queues + p")
    assert await page.locator("text=Role: admin").count() == 1
    await shot(page, tmp_path, "overview")
    phone = await new_page(browser, width=390, height=844)
    await login(phone, base)
    assert await cell(phone, row, "messages") == "7"
    await shot(phone, tmp_path, "overview-phone")
    # The session cookie: HttpOnly, SameSite=Strict, and not the token.
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["crmsync_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert "test-admin-token" not in session["value"]


async def test_an_operator_runs_a_job_and_opens_the_run(browser, console, tmp_path, db) -> None:
    base, _ = console
    page = await new_page(browser)
    await login(page, base, OPERATOR)
    await page.click("tr[data-job='enrollments.expire'] button:has-text('Run now')")
    await page.wait_for_url(f"{base}/console/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    assert await page.inner_text("#run-status") == "SCHEDULED"
    await shot(page, tmp_path, "run-scheduled")
    await db.execute(
        "UPDATE job_runs SET status = 'failed', started_at = now(), finished_at = now(),"
        " totals = '{\"expired\": 3, \"cancellationsQueued\": 2}', error = 'shopify: 503'"
        " WHERE id = $1",
        run_id,
    )
    await page.goto(f"{base}/console/runs")
    await page.click(f"#run-table tr[data-run='{run_id}'] a")
    assert await page.inner_text("#run-status") == "FAILED"
    totals = await page.inner_text("#totals")
    assert "expired" in totals and "3" in totals and "cancellationsQueued" in totals
    assert await page.inner_text("#run-error") == "shopify: 503"
    await shot(page, tmp_path, "run")
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 1


async def test_a_replayed_dead_letter_leaves_the_dead_queue(browser, console, tmp_path) -> None:
    base, app = console
    topology = app[scheduler_key].broker.topology
    work, dead = topology.queue(queues.CREDITS), topology.dead_queue(queues.CREDITS)
    await publish(work, 2, dead=True)
    assert await queue_depth(dead) == 2
    page = await new_page(browser)
    await login(page, base, OPERATOR)
    assert await cell(page, "#queue-table tr[data-queue='syncer.credits']", "dead") == "2"
    await page.click("nav >> text=Dead letters")
    row = "#dead-table tr[data-queue='syncer.credits.dead']"
    assert await cell(page, row, "count") == "2"
    await shot(page, tmp_path, "dead-letters")
    await page.click(f"{row} a")
    assert await page.locator("article.dead").count() == 2
    await shot(page, tmp_path, "dead-queue")
    await page.click("article[data-message='console-test-0'] button:has-text('Replay')")
    await page.wait_for_selector("text=Replayed 1 message(s)")
    assert await page.locator("article.dead").count() == 1
    assert await queue_depth(dead) == 1 and await queue_depth(work) == 1
    await page.check("article[data-message='console-test-1'] input[name=confirm]")
    await page.click("article[data-message='console-test-1'] button:has-text('Purge')")
    await page.wait_for_selector("text=Purged 1 message(s)")
    await page.click("text=All dead queues")
    assert await cell(page, row, "count") == "0"
    await shot(page, tmp_path, "dead-letters-after")
    assert await queue_depth(dead) == 0 and await queue_depth(work) == 1


async def failed_action(db) -> tuple[int, str]:
    """A customer with an enrolment whose Shopify action failed: (action id, email)."""
    email = "ada.failed@example.com"
    customer = await db.fetchval(
        "INSERT INTO customers (provider, external_id, email, is_member)"
        " VALUES ('shopify', '7001', $1, true) RETURNING id",
        email,
    )
    enrolment = await db.fetchval(
        "INSERT INTO enrolments (customer_id, tier_id, expires_at)"
        " VALUES ($1, 1, now() + interval '365 days') RETURNING id",
        customer,
    )
    action = await db.fetchval(
        "INSERT INTO provider_actions (kind, provider, customer_id, enrolment_id, tier_id,"
        " status, attempts, max_attempts, last_error)"
        " VALUES ('add_membership', 'shopify', $1, $2, 1, 'failed', 5, 5,"
        " 'shopify: 422 Unprocessable Entity') RETURNING id",
        customer,
        enrolment,
    )
    return action, email


async def test_an_operator_retries_a_failed_action_and_traces_its_customer(
    browser, console, tmp_path, db
) -> None:
    base, app = console
    action, email = await failed_action(db)
    page = await new_page(browser)
    await login(page, base, OPERATOR)
    row = "#action-table tr[data-provider='shopify']"
    assert await cell(page, row, "failed") == "1"
    await page.click("nav >> text=Provider actions")
    assert "shopify: 422" in await page.inner_text(f"tr[data-action='{action}']")
    await shot(page, tmp_path, "actions-failed")
    await page.click(f"tr[data-action='{action}'] button:has-text('Retry')")
    await page.wait_for_selector("text=Queued 1 provider action(s)")
    assert await page.locator(f"tr[data-action='{action}']").count() == 0
    assert await db.fetchval("SELECT status FROM provider_actions WHERE id = $1", action) == (
        "pending"
    )
    # Re-queued through the outbox: the relay publishes it to the action queue.
    actions_queue = app[scheduler_key].broker.topology.queue(queues.MEMBERSHIP_ACTIONS["shopify"])

    async def queued() -> bool:
        return await queue_depth(actions_queue) == 1

    await eventually(queued, timeout_s=30)
    await page.click("nav >> text=Trace")
    await page.fill("#q", email)
    await page.click("form[role=search] button")
    story = await page.inner_text("#trace")
    assert "customer" in story and "provider_action" in story
    kinds = await page.locator("#trace li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds[0] == "customer.created"
    await shot(page, tmp_path, "trace")


async def test_a_viewer_sees_no_buttons_and_is_refused_when_posting(
    browser, console, tmp_path, db
) -> None:
    base, app = console
    topology = app[scheduler_key].broker.topology
    await publish(topology.queue(queues.CREDITS), 1, dead=True)
    action, _ = await failed_action(db)
    page = await new_page(browser)
    await login(page, base, VIEWER)
    for path in ("/console", "/console/dead-letters/syncer.credits.dead", "/console/actions"):
        await page.goto(f"{base}{path}")
        labels = await page.locator("main button").all_inner_texts()
        assert labels == [] or all(b == "Show" or b == "Trace" for b in labels), (path, labels)
        await shot(page, tmp_path, "viewer" + path.replace("/", "-"))
    csrf = await page.get_attribute("input[name=csrf]", "value")
    for url, form in (
        ("/console/actions/retry", {"csrf": csrf, "id": str(action)}),
        ("/console/dead-letters/syncer.credits.dead/replay", {"csrf": csrf, "all": "1"}),
        ("/console/jobs/enrollments.expire/run", {"csrf": csrf}),
    ):
        resp = await page.request.post(f"{base}{url}", form=form, max_redirects=0)
        assert resp.status == 403, url
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert "viewer" in (await resp.json())["detail"]
    assert await db.fetchval("SELECT status FROM provider_actions WHERE id = $1", action) == (
        "failed"
    )
    assert await queue_depth(topology.dead_queue(queues.CREDITS)) == 1
    assert await db.fetchval("SELECT count(*) FROM job_runs") == 0


async def test_a_post_without_the_csrf_token_is_refused(browser, console, db) -> None:
    base, app = console
    topology = app[scheduler_key].broker.topology
    await publish(topology.queue(queues.CREDITS), 1, dead=True)
    action, _ = await failed_action(db)
    page = await new_page(browser)
    # The login form itself: no CSRF field, no login.
    await page.goto(f"{base}/console/login")
    resp = await page.request.post(
        f"{base}/console/login", form={"token": OPERATOR}, max_redirects=0
    )
    assert resp.status == 403 and resp.headers["content-type"].startswith(PROBLEM)
    await login(page, base, OPERATOR)
    for url, form in (
        ("/console/actions/retry", {"id": str(action)}),
        ("/console/actions/retry", {"id": str(action), "csrf": "forged"}),
        ("/console/dead-letters/syncer.credits.dead/replay", {"all": "1"}),
    ):
        resp = await page.request.post(f"{base}{url}", form=form, max_redirects=0)
        assert resp.status == 403, url
        body = await resp.json()
        assert "CSRF" in body["detail"]
    assert await db.fetchval("SELECT status FROM provider_actions WHERE id = $1", action) == (
        "failed"
    )
    assert await queue_depth(topology.dead_queue(queues.CREDITS)) == 1
