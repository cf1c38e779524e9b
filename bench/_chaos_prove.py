"""The end of every chaos run (unless ``--no-prove``): plant defects in the live stack
and check that the judge counts each of them.

With the syncers and schedulers stopped (nothing may repair a defect before the second
look), it plants, through the providers' own APIs and plain SQL: a second tier tag at
Shopify (GraphQL ``tagsAdd``), a second active membership at Commerce7
(``POST /club-membership``), a HubSpot balance (``batch/update``), a second enrolment
from one order, a processed notification's rows deleted, a balance changed in Postgres
(which HubSpot then differs from too); then it judges again and compares.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from _chaos_facts import gather
from _chaos_judge import Facts, active_tier, logical
from _chaos_load import COMMERCE7_TENANT, Item
from _chaos_selftest import TIERS, figure
from _chaos_verdict import (
    judge_commerce7_state,
    judge_hubspot_state,
    judge_phase,
    judge_shopify_state,
)


async def prove_live(run: Any) -> dict[str, Any]:
    """Plant defects in the real stack after its last phase and check the judge sees them.

    ``run`` is a :class:`_chaos_run.Run` whose ``last`` holds the last phase's ledger,
    facts and verdict. Stops the syncers and schedulers first, so nothing repairs the
    defects before the second look.
    """
    items, facts, before = run.last
    for slot in run.slots:
        if slot.role in ("syncer", "scheduler"):
            slot.stop()
    sandbox = run.slot("sandbox").url
    planted: dict[str, str] = {}
    right_shop = [
        c
        for c in sorted(facts.shopify_tags)
        if active_tier(facts, "shopify", c) and not judge_shopify_state({c}, facts)["wrong"]
    ]
    right_wine = [
        c
        for c in sorted(facts.c7_memberships)
        if active_tier(facts, "commerce7", c) and not judge_commerce7_state({c}, facts)["wrong"]
    ]
    students = [s for s in sorted(facts.credits) if not judge_hubspot_state({s}, facts)["wrong"]]
    async with aiohttp.ClientSession() as http:
        if right_shop:
            c, other = right_shop[0], TIERS["Silver"]["shopify_tag"]
            if active_tier(facts, "shopify", c) == "Silver":
                other = TIERS["Gold"]["shopify_tag"]
            query = (
                "mutation tagsAdd($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags)"
                " { node { id } userErrors { field message } } }"
            )
            async with http.post(
                f"{sandbox}/shopify/admin/api/2026-07/graphql.json",
                json={
                    "query": query,
                    "variables": {"id": f"gid://shopify/Customer/{c}", "tags": [other]},
                },
                headers={"X-Shopify-Access-Token": "sandbox-shopify-token"},
            ) as resp:
                resp.raise_for_status()
            planted["shopify"] = f"{c}: tag {other} added"
        if right_wine:
            c = right_wine[0]
            club = next(m["clubId"] for m in facts.c7_memberships[c] if m["status"] == "Active")
            async with http.post(
                f"{sandbox}/commerce7/v1/club-membership",
                json={"customerId": c, "clubId": club},
                auth=aiohttp.BasicAuth("crmsync-sandbox", "sandbox-commerce7-secret"),
                headers={"tenant": COMMERCE7_TENANT},
            ) as resp:
                resp.raise_for_status()
            planted["commerce7"] = f"{c}: a second active membership in {club}"
        if len(students) >= 2:
            s = students[0]
            target = facts.hubspot[facts.contact_emails[s].lower()][0]
            async with http.get(f"{sandbox}/_sandbox/hubspot/objects/contacts") as resp:
                hs_id = next(
                    r["id"]
                    for r in (await resp.json())["results"]
                    if r["properties"].get("email") == target.get("email")
                )
            async with http.post(
                f"{sandbox}/hubspot/crm/v3/objects/contacts/batch/update",
                json={"inputs": [{"id": hs_id, "properties": {"sj_credits": "987654"}}]},
                headers={"Authorization": "Bearer sandbox-hubspot-token"},
            ) as resp:
                resp.raise_for_status()
            planted["hubspot"] = f"{s}: sj_credits 987654 in HubSpot"
    db = await asyncpg.connect(run.dsn)
    try:
        planted.update(await _plant_postgres(db, items, facts, students))
        after_facts = await gather(db, run.crm_dsn, sandbox, items)
    finally:
        await db.close()
    after = judge_phase(items, after_facts)
    expected = {
        "providers.shopify.wrong": int("shopify" in planted),
        "providers.commerce7.wrong": int("commerce7" in planted),
        "providers.hubspot.wrong": int("hubspot" in planted) + int("wrong_pg" in planted),
        "totals.duplicated": int("duplicated" in planted),
        "totals.lost": int("lost" in planted),
        "totals.wrong_pg": int("wrong_pg" in planted),
    }
    moved = {k: figure(after, k) - figure(before, k) for k in expected}
    return {"planted": planted, "expected": expected, "moved": moved, "ok": moved == expected}


async def _plant_postgres(
    db: asyncpg.Connection, items: list[Item], facts: Facts, students: list[str]
) -> dict[str, str]:
    planted = {}
    shop = sorted(
        c
        for (p, c), e in facts.enrolments.items()
        if p == "shopify" and e and len({x["order"] for x in e}) == len(e) == 2
    )
    if shop:
        enrolment = facts.enrolments[("shopify", shop[0])][-1]["id"]
        await db.execute(
            "INSERT INTO enrolments (customer_id, tier_id, status, expires_at, source_order_id)"
            " SELECT customer_id, tier_id, 'upgraded', expires_at, source_order_id"
            " FROM enrolments WHERE id = $1",
            enrolment,
        )
        planted["duplicated"] = f"shopify {shop[0]}: a second enrolment from its order"
    single = next(
        (
            g[0].info["key"]
            for g in logical(items).values()
            if g[0].stream == "credits"
            and len(g[0].info["changes"]) == 1
            and any(i.accepted for i in g)
            and ("syncer.credits", f"chaos:{g[0].info['key']}") in facts.processed
        ),
        None,
    )
    if single:
        event_id = f"chaos:{single}"
        await db.execute("DELETE FROM processed_messages WHERE event_id = $1", event_id)
        await db.execute("DELETE FROM audit_log WHERE event_id = $1", event_id)
        planted["lost"] = f"notification {single}: its processed and audit rows deleted"
    if len(students) >= 2:
        s = students[1]
        await db.execute(
            "UPDATE contact_credits SET balance = balance + 1000 WHERE credit_type = 'sj_credits'"
            " AND contact_id = (SELECT id FROM contacts WHERE student_id = $1)",
            s,
        )
        planted["wrong_pg"] = f"{s}: sj_credits + 1000 in Postgres (HubSpot now differs too)"
    return planted
