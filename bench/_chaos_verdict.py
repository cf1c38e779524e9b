"""The chaos bench's verdict on the providers, and one phase's verdict in all.

Provider state is judged against Postgres (not the ledger): what crmsync holds is the
truth the providers must converge to. Definitions are in ``_chaos_judge.py``.
"""

from __future__ import annotations

from typing import Any

from _chaos_judge import (
    Facts,
    active_tier,
    judge_bookings,
    judge_credits,
    judge_logins,
    judge_orders,
    tally,
)
from _chaos_load import Item


def judge_shopify_state(customers: set[str], f: Facts) -> dict[str, Any]:
    """Customers whose crmsync tier tags at Shopify differ from their tier in Postgres."""
    v: dict[str, Any] = {"customers": len(customers), "wrong": 0}
    tier_of_tag = {t["shopify_tag"].lower(): name for name, t in f.tiers.items()}
    for customer in sorted(customers):
        expected = active_tier(f, "shopify", customer)
        tags = [t for t in f.shopify_tags.get(customer, []) if t.lower() in tier_of_tag]
        held = [tier_of_tag[t.lower()] for t in tags]
        if held == ([expected] if expected else []):
            continue
        if len(held) > 1:
            reason = "more than one tier tag"
        elif not held:
            reason = "tier tag missing"
        elif expected is None:
            reason = "tier tag without an enrolment"
        else:
            reason = "wrong tier tag"
        tally(v, "wrong", reason, f"{customer} has {held}, Postgres {expected}")
    return v


def judge_commerce7_state(customers: set[str], f: Facts) -> dict[str, Any]:
    """Customers without exactly one active membership, in the club of their tier."""
    v: dict[str, Any] = {"customers": len(customers), "wrong": 0}
    for customer in sorted(customers):
        expected = active_tier(f, "commerce7", customer)
        club = f.tiers[expected]["commerce7_club_id"] if expected else None
        active = [
            m["clubId"]
            for m in f.c7_memberships.get(customer, [])
            if m.get("status") == "Active" and not m.get("cancelDate")
        ]
        if active == ([club] if club else []):
            continue
        if len(active) > 1:
            reason = "more than one active membership"
        elif not active:
            reason = "active membership missing"
        elif club is None:
            reason = "active membership without an enrolment"
        else:
            reason = "membership in the wrong club"
        tally(v, "wrong", reason, f"{customer}: {len(active)} active, Postgres {expected}")
    return v


def judge_hubspot_state(students: set[str], f: Facts) -> dict[str, Any]:
    """HubSpot contacts missing, doubled, or whose balances differ from Postgres."""
    v: dict[str, Any] = {"contacts": 0, "wrong": 0}
    for s in sorted(students):
        balances = f.credits.get(s)
        if not balances:
            continue
        v["contacts"] += 1
        email = f.contact_emails.get(s, "").lower()
        found = f.hubspot.get(email, [])
        if len(found) != 1:
            reason = "contact missing" if not found else "contact doubled"
            tally(v, "wrong", reason, email)
            continue
        differ = [n for n, (b, _) in balances.items() if found[0].get(n) != str(b)]
        if differ:
            tally(v, "wrong", "balance differs from Postgres", f"{email} {differ}")
    return v


def judge_calls(provider: str, customers: set[str], f: Facts) -> dict[str, Any]:
    """Calls to ``provider`` in the phase's request log, against the minimum."""
    calls = [r for r in f.requests if r["provider"] == provider]
    minimum = 0
    for customer in customers:
        enrolments = f.enrolments.get((provider, customer), [])
        minimum += len(enrolments) + sum(e["status"] == "upgraded" for e in enrolments)
    reads = sum(r["method"] == "GET" for r in calls)
    return {
        "calls": len(calls),
        "reads": reads,
        # Negative: fewer writes than the enrolments need (something was never sent).
        "extra_writes": len(calls) - reads - minimum,
        "failed": sum(r["status"] is not None and not 200 <= r["status"] < 300 for r in calls),
        "unanswered": sum(r["status"] is None for r in calls),
        "minimum": minimum,
        "extra": len(calls) - minimum,
    }


def judge_phase(items: list[Item], f: Facts) -> dict[str, Any]:
    """Every verdict of one phase, and the totals the table shows."""
    streams = {
        "shopify": judge_orders("shopify", items, f),
        "commerce7": judge_orders("commerce7", items, f),
        "credits": judge_credits(items, f),
        "bookings": judge_bookings(items, f),
        "logins": judge_logins(items, f),
    }
    shop = {i.info["customer"] for i in items if i.stream == "shopify"}
    wine = {i.info["customer"] for i in items if i.stream == "commerce7"}
    students = {
        c["contact"]["studentId"] for i in items if i.stream == "credits" for c in i.info["changes"]
    }
    providers = {
        "shopify": judge_shopify_state(shop, f),
        "commerce7": judge_commerce7_state(wine, f),
        "hubspot": judge_hubspot_state(students, f),
    }
    calls = {
        "shopify": judge_calls("shopify", shop, f),
        "commerce7": judge_calls("commerce7", wine, f),
        "hubspot": {"calls": sum(r["provider"] == "hubspot" for r in f.requests)},
    }
    totals = {
        k: sum(s[k] for s in streams.values())
        for k in ("sent", "accepted", "applied", "lost", "duplicated", "wrong_pg")
    }
    totals["wrong_provider"] = sum(p["wrong"] for p in providers.values())
    totals["extra_calls"] = calls["shopify"]["extra"] + calls["commerce7"]["extra"]
    return {"totals": totals, "streams": streams, "providers": providers, "calls": calls}
