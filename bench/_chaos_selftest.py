"""Proof that the chaos judge counts what it claims to count.

- :func:`self_test` (``bench/chaos.py --self-test``, no processes): a small ledger, a
  Postgres-and-providers state that is exactly right (the judge must say 0 everywhere),
  then one defect at a time (a second tier tag, two active memberships, a stale balance,
  a lost order, ...): each must be counted exactly once, under its own heading.
- ``_chaos_prove.py`` does the same on the live stack at the end of every run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from _chaos_judge import FIELD_OF, Facts, logical
from _chaos_load import Item, Secrets, Sizes, plan_phase
from _chaos_verdict import judge_phase

TIERS = {
    "Bronze": {"shopify_tag": "crmsync-tier-bronze", "commerce7_club_id": "club-bronze"},
    "Silver": {"shopify_tag": "crmsync-tier-silver", "commerce7_club_id": "club-silver"},
    "Gold": {"shopify_tag": "crmsync-tier-gold", "commerce7_club_id": "club-gold"},
}


def _ledger() -> list[Item]:
    sizes = Sizes(shopify=4, commerce7=3, students=10, versions=4, bookings=6, logins=4)
    secrets = Secrets("s", "u", "p", "k")
    emails = [f"crm{i}@example.test" for i in range(10)]
    items = plan_phase("kill", 1, sizes, 10, secrets, emails, seed=7)
    for item in items:
        item.attempts.append((0.0, 0.1, "202"))
    return items


def perfect_facts(items: list[Item]) -> Facts:
    """The state a flawless crmsync leaves for ``items`` (all accepted)."""
    f = Facts(tiers=copy.deepcopy(TIERS))
    for provider in ("shopify", "commerce7"):
        orders: dict[str, dict[str, str]] = {}
        for i in items:
            if i.stream == provider:
                orders.setdefault(i.info["customer"], {})[i.info["tier"]] = i.info["order"]
        for n, (customer, by_tier) in enumerate(sorted(orders.items())):
            key = (provider, customer)
            f.customer_rows[key] = 1
            for order in by_tier.values():
                f.order_rows[(provider, order)] = 1
            f.enrolments[key] = [
                {"id": 2 * n, "status": "upgraded", "tier": "Silver", "order": by_tier["Silver"]},
                {"id": 2 * n + 1, "status": "active", "tier": "Gold", "order": by_tier["Gold"]},
            ]
            f.actions[key] = [
                {"enrolment": 2 * n, "kind": "add_membership", "status": "completed"},
                {"enrolment": 2 * n + 1, "kind": "upgrade_membership", "status": "completed"},
            ]
            if provider == "shopify":
                f.shopify_tags[customer] = ["vip", TIERS["Gold"]["shopify_tag"]]
                f.requests += [{"provider": "shopify", "method": "POST", "status": 200}] * 3
            else:
                f.c7_memberships[customer] = [
                    {"clubId": "club-silver", "status": "Cancelled", "cancelDate": "2030-01-01"},
                    {"clubId": "club-gold", "status": "Active", "cancelDate": None},
                ]
                f.requests += [{"provider": "commerce7", "method": "POST", "status": 200}] * 3
    audit_id = 0
    changes = sorted(
        (
            (c["version"], g[0].info["key"], c)
            for g in logical(items).values()
            if g[0].stream == "credits"
            for c in g[0].info["changes"]
        ),
        key=lambda t: t[0],
    )
    for version, key, change in changes:
        s = change["contact"]["studentId"]
        f.contact_emails[s] = change["contact"]["email"]
        touched = {FIELD_OF.get(n, n): b for n, b in change["credits"].items()}
        f.credits.setdefault(s, {}).update({n: (b, version) for n, b in touched.items()})
        f.processed.add(("syncer.credits", f"chaos:{key}"))
        audit_id += 1
        f.audit.append(
            {
                "id": audit_id,
                "entity": "contact",
                "event_id": f"chaos:{key}",
                "key": s,
                "details": {"appVersion": version, "credits": touched},
            }
        )
    for s, balances in f.credits.items():
        props = {n: str(b) for n, (b, _) in balances.items()}
        f.hubspot[f.contact_emails[s].lower()] = [{"email": f.contact_emails[s], **props}]
    for group in logical(items).values():
        info = group[0].info
        if group[0].stream == "bookings":
            f.processed.add(("syncer.bookings", f"chaos:{info['key']}"))
            audit_id += 1
            f.audit.append(
                {
                    "id": audit_id,
                    "entity": "booking",
                    "event_id": f"chaos:{info['key']}",
                    "key": info["booking"],
                    "details": {},
                }
            )
            row = f.bookings.get(info["booking"])
            if row is None or row["version"] < info["version"]:
                f.bookings[info["booking"]] = {
                    "version": info["version"],
                    "status": "cancelled" if info["action"] == "cancelled" else "confirmed",
                    "attended": True if info["action"] == "attendance_marked" else None,
                    "exam": info["exam"],
                }
        elif group[0].stream == "logins":
            f.profiles[info["profile"]] = {
                "last_login_at": datetime.fromisoformat(info["occurred_at"]),
                "status": "matched",
                "customer": "c1",
                "packages": 3,
                "crm_packages": 3,
            }
    for exam in {i.info["exam"] for i in items if i.stream == "bookings"}:
        n = sum(r["status"] == "confirmed" for r in f.bookings.values() if r["exam"] == exam)
        f.exams[exam] = (n, n)
    return f


def _first(items: list[Item], stream: str) -> dict[str, Any]:
    return next(i.info for i in items if i.stream == stream)


def _defects(items: list[Item]) -> list[tuple[str, Callable[[Facts], None], str, int]]:
    """(name, how to break a perfect state, the figure that must move, by how much)."""
    shop, wine = _first(items, "shopify")["customer"], _first(items, "commerce7")["customer"]
    order = _first(items, "shopify")["order"]
    note = _first(items, "credits")
    s = note["changes"][0]["contact"]["studentId"]
    email = note["changes"][0]["contact"]["email"].lower()
    booking = _first(items, "bookings")
    login = _first(items, "logins")["profile"]
    silver_tag, bronze_club = TIERS["Silver"]["shopify_tag"], TIERS["Bronze"]["commerce7_club_id"]
    gold_tag = TIERS["Gold"]["shopify_tag"]

    def stale(f: Facts) -> None:
        f.audit.append(
            {
                "id": 10_000,
                "entity": "contact",
                "event_id": "chaos:late",
                "key": s,
                "details": {"appVersion": 1, "credits": {"sj_credits": 0}},
            }
        )

    return [
        (
            "a second tier tag at Shopify",
            lambda f: f.shopify_tags[shop].append(silver_tag),
            "providers.shopify.wrong",
            1,
        ),
        (
            "no tier tag at Shopify",
            lambda f: f.shopify_tags.pop(shop),
            "providers.shopify.wrong",
            1,
        ),
        (
            "the wrong tier's tag only",
            lambda f: f.shopify_tags.__setitem__(shop, [silver_tag]),
            "providers.shopify.wrong",
            1,
        ),
        (
            "the right tag in another case (Shopify ignores case): not wrong",
            lambda f: f.shopify_tags.__setitem__(shop, [gold_tag.upper()]),
            "providers.shopify.wrong",
            0,
        ),
        (
            "a cancelled extra membership: not wrong",
            lambda f: f.c7_memberships[wine].append(
                {"clubId": "club-gold", "status": "Cancelled", "cancelDate": "2030-01-02"}
            ),
            "providers.commerce7.wrong",
            0,
        ),
        (
            "two active memberships at Commerce7",
            lambda f: f.c7_memberships[wine].append({"clubId": "club-gold", "status": "Active"}),
            "providers.commerce7.wrong",
            1,
        ),
        (
            "a membership in the wrong club",
            lambda f: f.c7_memberships[wine][1].update(clubId=bronze_club),
            "providers.commerce7.wrong",
            1,
        ),
        (
            "a HubSpot balance that differs",
            lambda f: f.hubspot[email][0].update(sj_credits="-1"),
            "providers.hubspot.wrong",
            1,
        ),
        (
            "a HubSpot contact twice",
            lambda f: f.hubspot[email].append(dict(f.hubspot[email][0])),
            "providers.hubspot.wrong",
            1,
        ),
        (
            "an accepted order with no row",
            lambda f: f.order_rows.pop(("shopify", order)),
            "totals.lost",
            1,
        ),
        (
            "two enrolments from one order",
            lambda f: f.enrolments[("shopify", shop)].append(
                {
                    "id": -1,
                    "status": "upgraded",
                    "tier": "Gold",
                    "order": f.enrolments[("shopify", shop)][1]["order"],
                }
            ),
            "totals.duplicated",
            1,
        ),
        (
            "two active enrolments",
            lambda f: f.enrolments[("commerce7", wine)][0].update(status="active"),
            "totals.duplicated",
            1,
        ),
        (
            "a credits notification never processed",
            lambda f: (
                f.processed.discard(("syncer.credits", f"chaos:{note['key']}")),
                f.audit.__setitem__(
                    slice(None), [a for a in f.audit if a["event_id"] != f"chaos:{note['key']}"]
                ),
            ),
            "totals.lost",
            1,
        ),
        (
            "a balance left at an older version",
            lambda f: f.credits[s].update(sj_credits=(0, 1)),
            "totals.lost",
            1,
        ),
        ("a stale version that moved a balance", stale, "totals.duplicated", 1),
        (
            "a balance that is not its version's value",
            lambda f: f.credits[s].update(sj_credits=(999, f.credits[s]["sj_credits"][1])),
            "totals.wrong_pg",
            1,
        ),
        (
            "a booking event applied twice",
            lambda f: f.audit.append(
                {**next(a for a in f.audit if a["entity"] == "booking"), "id": 10_001}
            ),
            "totals.duplicated",
            1,
        ),
        (
            "an exam counting a booking twice",
            lambda f: f.exams.__setitem__(
                booking["exam"], (f.exams[booking["exam"]][0] + 1, f.exams[booking["exam"]][1])
            ),
            "totals.duplicated",
            1,
        ),
        ("a login never applied", lambda f: f.profiles.pop(login), "totals.lost", 1),
        (
            "more packages than the CRM has",
            lambda f: f.profiles[login].update(packages=4),
            "totals.duplicated",
            1,
        ),
        (
            "three extra Shopify calls",
            lambda f: f.requests.extend(
                [{"provider": "shopify", "method": "GET", "status": 200}] * 3
            ),
            "calls.shopify.extra",
            3,
        ),
    ]


def figure(verdict: dict[str, Any], path: str) -> int:
    value: Any = verdict
    for part in path.split("."):
        value = value[part]
    return int(value)


def self_test() -> list[str]:
    """Run every defect through the judge; the failures (empty when the judge is right)."""
    items = _ledger()
    base = judge_phase(items, perfect_facts(items))
    failures = []
    t = base["totals"]
    zero = ("lost", "duplicated", "wrong_pg", "wrong_provider")
    if any(t[k] for k in zero) or t["extra_calls"]:
        failures.append(f"a flawless state was not judged flawless: {t}")
    if t["applied"] != t["accepted"] or t["accepted"] != t["sent"]:
        failures.append(f"a flawless state did not count everything applied: {t}")
    failures += _ledger_semantics(items)
    for name, corrupt, path, delta in _defects(items):
        facts = perfect_facts(items)
        corrupt(facts)
        moved = figure(judge_phase(items, facts), path) - figure(base, path)
        if moved != delta:
            failures.append(f"{name}: {path} moved by {moved}, expected {delta}")
        else:
            print(f"  ok  {name}: {path} +{moved}")
    return failures


def _ledger_semantics(items: list[Item]) -> list[str]:
    """What counts as accepted: a refused request is never lost; a replay's 2xx counts."""
    failures = []
    order = next(i for i in items if i.stream == "shopify" and i.replay_of is None)
    refused = copy.deepcopy(items)
    next(i for i in refused if i.n == order.n).attempts = [(0.0, 0.1, "503")] * 6
    facts = perfect_facts(items)
    facts.order_rows.pop(("shopify", order.info["order"]))
    v = judge_phase(refused, facts)
    replays = {i.replay_of for i in refused if i.replay_of is not None}
    expected_lost = 1 if order.n in replays else 0  # its replay was accepted
    if v["totals"]["lost"] != expected_lost:
        failures.append(
            f"an order never accepted: lost {v['totals']['lost']}, expected {expected_lost}"
        )
    else:
        print(f"  ok  an order refused 503 every time and absent: lost {expected_lost}")
    replayed = next(i for i in items if i.replay_of is not None)
    only_replay = copy.deepcopy(items)
    original = next(i for i in only_replay if i.n == replayed.replay_of)
    original.attempts = [(0.0, 0.1, "ClientConnectorError")]
    facts = perfect_facts(items)
    if replayed.stream in ("shopify", "commerce7"):
        facts.order_rows.pop((replayed.stream, replayed.info["order"]))
    else:
        facts.processed = {p for p in facts.processed if not p[1].endswith(replayed.info["key"])}
        facts.audit = [a for a in facts.audit if not a["event_id"].endswith(replayed.info["key"])]
        facts.profiles.pop(replayed.info.get("profile", ""), None)
    moved = judge_phase(only_replay, facts)["totals"]["lost"]
    if moved < 1:
        failures.append("an item accepted only on its replay and absent was not lost")
    else:
        print(f"  ok  an item accepted only through its replay and absent: lost {moved}")
    return failures
