"""The chaos bench's judge: ledger + what Postgres and the providers hold -> verdicts.

Pure functions over plain data (:class:`Facts`, built by ``_chaos_facts.py``), so
``bench/chaos.py --self-test`` can feed them broken states and check that each defect
is counted. Definitions (the README's "Reading the output" repeats them):

- **accepted**: a logical request (a replay counts with its original) that got a 2xx.
- **applied**: its effect is in Postgres. Orders: the ``orders`` row of that order id.
  Credits and bookings: the handler's ``processed_messages`` row (written in the same
  transaction as its effects) or an ``audit_log`` row carrying the event id. Logins:
  the profile row with ``last_login_at`` at or after the login.
- **lost**: accepted and not applied; also a balance (per student and credit type) or
  a booking whose stored version is older than the newest accepted one.
- **duplicated in Postgres**: applied twice. Orders: per customer, two rows for one
  order or one customer, two enrolments from one order, more enrolments than orders,
  two active enrolments, two actions of one kind for one enrolment. Credits: two audit
  entries of one event for one contact, or an entry that moved a balance with a version
  not newer than an earlier entry's (a stale version). Bookings: two audit entries of
  one event; an exam counting more bookings than are confirmed. Logins: more packages
  than the CRM has for the mapped customer.
- **wrong in Postgres**: applied, not doubled, but not the state the ledger implies
  (tier not the best of the applied orders; balance not the value of its version;
  booking status not that of its version; a profile not matched or missing packages).
- **wrong at a provider**: Shopify customers whose crmsync tier tags differ from the
  tier of their active enrolment (both tags, none, the wrong one); Commerce7 customers
  without exactly one active membership, in their tier's club; HubSpot contacts missing,
  doubled, or with a balance different from Postgres.
- **extra provider calls**: calls in the sandbox's request log beyond the minimum: one
  write per enrolment created (tag added, membership created) plus one per enrolment
  upgraded away (tag removed, membership cancelled). Reads count as extra.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _chaos_load import API_KEY_NAME, Item

TIER_RANK = {"Silver": 2, "Gold": 3}
# The app's token name the stream uses -> crmsync's credit field (shared/messages/credits.py).
FIELD_OF = {"Mini-mock Token": "sjmini_credits"}


@dataclass
class Facts:
    """What Postgres and the sandbox hold for one phase (plain data)."""

    tiers: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> tag, club
    # (provider, customer external id) -> customer rows
    customer_rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    order_rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (provider, customer) -> [{"id", "status", "tier", "order"}]
    enrolments: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # (provider, customer) -> [{"enrolment", "kind", "status"}]
    actions: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    processed: set[tuple[str, str]] = field(default_factory=set)  # (consumer, event id)
    # [{"event_id", "entity", "key" (student or booking ref), "id", "details"}]
    audit: list[dict[str, Any]] = field(default_factory=list)
    # student -> {field: (balance, version)}
    credits: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # student -> email
    contact_emails: dict[str, str] = field(default_factory=dict)
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)  # ref -> status...
    exams: dict[str, tuple[int, int]] = field(default_factory=dict)  # ref -> (total, confirmed)
    # profile -> {"last_login_at", "status", "customer", "packages", "crm_packages"}
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    shopify_tags: dict[str, list[str]] = field(default_factory=dict)  # customer -> tags
    c7_memberships: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hubspot: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # email -> props
    requests: list[dict[str, Any]] = field(default_factory=list)


def logical(items: list[Item]) -> dict[int, list[Item]]:
    """Original item number -> the original and its replays."""
    groups: dict[int, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.replay_of if item.replay_of is not None else item.n].append(item)
    return groups


def _verdict(**counts: Any) -> dict[str, Any]:
    base = {"sent": 0, "accepted": 0, "applied": 0, "lost": 0, "duplicated": 0, "wrong_pg": 0}
    return {**base, **counts}


def tally(base: dict[str, Any], key: str, reason: str, example: str) -> None:
    base[key] += 1
    base.setdefault("why", Counter())[f"{key}: {reason}"] += 1
    base.setdefault("examples", {}).setdefault(f"{key}: {reason}", example)


def judge_orders(provider: str, items: list[Item], f: Facts) -> dict[str, Any]:
    groups = logical([i for i in items if i.stream == provider])
    v = _verdict(sent=len(groups))
    applied_by_customer: dict[str, list[str]] = defaultdict(list)
    customers: set[str] = set()
    orders_of: dict[str, set[str]] = defaultdict(set)
    for group in groups.values():
        info = group[0].info
        customers.add(info["customer"])
        orders_of[info["customer"]].add(info["order"])
        applied = f.order_rows[(provider, info["order"])] > 0
        if applied:
            applied_by_customer[info["customer"]].append(info["tier"])
        if any(i.accepted for i in group):
            v["accepted"] += 1
            if applied:
                v["applied"] += 1
            else:
                tally(v, "lost", "accepted order has no orders row", info["order"])
    for customer in sorted(customers):
        key = (provider, customer)
        enrolments = f.enrolments.get(key, [])
        doubled = [
            reason
            for reason, bad in (
                (
                    "two rows for one order",
                    any(f.order_rows[(provider, o)] > 1 for o in orders_of[customer]),
                ),
                ("two customer rows", f.customer_rows[key] > 1),
                (
                    "two enrolments from one order",
                    max(Counter(e["order"] for e in enrolments).values(), default=0) > 1,
                ),
                ("more enrolments than orders", len(enrolments) > len(orders_of[customer])),
                ("two active enrolments", sum(e["status"] == "active" for e in enrolments) > 1),
                (
                    "two actions of one kind for one enrolment",
                    max(
                        Counter(
                            (a["enrolment"], a["kind"]) for a in f.actions.get(key, [])
                        ).values(),
                        default=0,
                    )
                    > 1,
                ),
            )
            if bad
        ]
        if doubled:
            tally(v, "duplicated", doubled[0], customer)
            continue
        tiers = applied_by_customer.get(customer, [])
        expected = max(tiers, key=TIER_RANK.__getitem__) if tiers else None
        active = [e["tier"] for e in enrolments if e["status"] == "active"]
        if (active[0] if active else None) != expected:
            tally(v, "wrong_pg", f"tier {active or None} for orders {tiers}", customer)
    v["customers"] = len(customers)
    v["actions"] = dict(
        Counter(a["status"] for c in customers for a in f.actions.get((provider, c), []))
    )
    return v


def active_tier(f: Facts, provider: str, customer: str) -> str | None:
    active = [
        e["tier"] for e in f.enrolments.get((provider, customer), []) if e["status"] == "active"
    ]
    return active[0] if len(active) == 1 else None


def _field(name: str) -> str:
    return FIELD_OF.get(name, name)


def judge_credits(items: list[Item], f: Facts) -> dict[str, Any]:
    groups = logical([i for i in items if i.stream == "credits"])
    v = _verdict(sent=len(groups))
    audited = Counter((a["event_id"], a["key"]) for a in f.audit if a["entity"] == "contact")
    audited_events = {e for e, _ in audited}
    newest: dict[tuple[str, str], tuple[int, str]] = {}
    value_at: dict[tuple[str, str, int], int] = {}
    students: set[str] = set()
    lost: set[str] = set()
    for group in groups.values():
        info = group[0].info
        event_id = f"{API_KEY_NAME}:{info['key']}"
        accepted = any(i.accepted for i in group)
        for change in info["changes"]:
            s = change["contact"]["studentId"]
            students.add(s)
            for name, balance in change["credits"].items():
                value_at[(s, _field(name), change["version"])] = balance
                k = (s, _field(name))
                if accepted and change["version"] > newest.get(k, (0, ""))[0]:
                    newest[k] = (change["version"], info["key"])
        if not accepted:
            continue
        v["accepted"] += 1
        if ("syncer.credits", event_id) in f.processed or event_id in audited_events:
            v["applied"] += 1
        else:
            lost.add(info["key"])
            tally(v, "lost", "accepted notification not processed", info["key"])
    for (s, name), (version, key) in sorted(newest.items()):
        if key in lost:
            continue  # counted once, above
        stored = f.credits.get(s, {}).get(name)
        if stored is None or stored[1] < version:
            tally(
                v,
                "lost",
                "balance older than the newest accepted version",
                f"{s} {name}: v{stored[1] if stored else None} < v{version}",
            )
        elif value_at.get((s, name, stored[1])) != stored[0]:
            tally(v, "wrong_pg", "balance is not its version's value", f"{s} {name}")
    for (event_id, s), n in audited.items():
        if n > 1:
            tally(v, "duplicated", "one event applied twice to a contact", f"{event_id} {s}")
    seen: dict[tuple[str, str], int] = {}
    for entry in sorted((a for a in f.audit if a["entity"] == "contact"), key=lambda a: a["id"]):
        version = int(entry["details"].get("appVersion", 0))
        for name in entry["details"].get("credits", {}):
            k = (entry["key"], name)
            if k in seen and version <= seen[k]:
                tally(v, "duplicated", "a stale version moved a balance", f"{k} v{version}")
            seen[k] = max(seen.get(k, 0), version)
    v["students"] = len(students)
    return v


def judge_bookings(items: list[Item], f: Facts) -> dict[str, Any]:
    groups = logical([i for i in items if i.stream == "bookings"])
    v = _verdict(sent=len(groups))
    audited = Counter(a["event_id"] for a in f.audit if a["entity"] == "booking")
    newest: dict[str, tuple[int, str]] = {}
    action_at: dict[tuple[str, int], str] = {}
    exams: set[str] = set()
    lost: set[str] = set()
    for group in groups.values():
        info = group[0].info
        exams.add(info["exam"])
        action_at[(info["booking"], info["version"])] = info["action"]
        if not any(i.accepted for i in group):
            continue
        v["accepted"] += 1
        if info["version"] > newest.get(info["booking"], (0, ""))[0]:
            newest[info["booking"]] = (info["version"], info["key"])
        event_id = f"{API_KEY_NAME}:{info['key']}"
        if ("syncer.bookings", event_id) in f.processed or audited[event_id]:
            v["applied"] += 1
        else:
            lost.add(info["key"])
            tally(v, "lost", "accepted booking event not processed", info["key"])
    for event_id, n in audited.items():
        if n > 1:
            tally(v, "duplicated", "one event applied twice", event_id)
    for ref, (version, key) in sorted(newest.items()):
        if key in lost:
            continue  # counted once, above
        row = f.bookings.get(ref)
        if row is None or row["version"] < version:
            tally(v, "lost", "booking older than its newest accepted version", ref)
            continue
        action = action_at.get((ref, row["version"]))
        status = "cancelled" if action == "cancelled" else "confirmed"
        attended = True if action == "attendance_marked" else None
        if (row["status"], row["attended"]) != (status, attended):
            tally(v, "wrong_pg", "status is not its version's", f"{ref} {row}")
    for exam in sorted(exams):
        total, confirmed = f.exams.get(exam, (0, 0))
        if total > confirmed:
            tally(v, "duplicated", "exam counts a booking twice", exam)
        elif total < confirmed:
            tally(v, "wrong_pg", "exam counts too few bookings", exam)
    return v


def judge_logins(items: list[Item], f: Facts) -> dict[str, Any]:
    groups = logical([i for i in items if i.stream == "logins"])
    v = _verdict(sent=len(groups))
    for group in groups.values():
        info = group[0].info
        if not any(i.accepted for i in group):
            continue
        v["accepted"] += 1
        profile = f.profiles.get(info["profile"])
        when = datetime.fromisoformat(info["occurred_at"])
        seen = profile is not None and profile["last_login_at"] is not None
        processed = ("syncer.logins", f"{API_KEY_NAME}:{info['key']}") in f.processed
        if not (processed or (seen and profile["last_login_at"] >= when)):
            tally(v, "lost", "accepted login not applied", info["profile"])
            continue
        v["applied"] += 1
        if profile is None or profile["status"] != "matched":
            tally(v, "wrong_pg", "profile not matched to its CRM customer", info["profile"])
        elif profile["packages"] > profile["crm_packages"]:
            tally(v, "duplicated", "more packages than the CRM has", info["profile"])
        elif profile["packages"] < profile["crm_packages"]:
            tally(v, "wrong_pg", "fewer packages than the CRM has", info["profile"])
    return v
