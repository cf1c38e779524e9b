"""Deterministic sample data for the sandbox CRM, with the mess real CRMs have.

Mixed-case emails, phones in half a dozen formats, customers sharing a full name (the
name lists are short on purpose), households sharing a phone, the same person entered
twice (same email in another case; sometimes the older record is archived, sometimes
both are live), customers without packages, expired, used-up, cancelled and frozen
packages. The same ``seed`` and ``today`` always give the same rows.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

FIRST_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Chris Karen Daniel Lisa Matthew Nancy "
    "Anthony Betty Mark Sandra Steven Ashley Paul Emily Andrew Kimberly Joshua Donna Kevin "
    "Michelle Brian Carol George Amanda Tim Melissa Ryan Deborah Jacob Stephanie Gary Rebecca "
    "Nick Laura Eric Helen Jon Sharon Luis Cynthia Ana José Zoë"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts O'Brien McDonald"
).split()
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "comcast.net")
# Real, allocated US area codes, so the numbers are valid as well as possible.
AREA_CODES = ("212", "312", "415", "617", "646", "702", "713", "718", "773", "818", "917")
PHONE_FORMATS = (
    "({a}) {e}-{n}",
    "{a}.{e}.{n}",
    "+1 {a} {e} {n}",
    "{a}{e}{n}",
    "{a}-{e}-{n}",
    "1-{a}-{e}-{n}",
    "+1 ({a}) {e}-{n}",
    " {a} {e} {n} ",
)
# (product code, name, unit, total, valid days); total None = unlimited.
PRODUCTS: tuple[tuple[str, str, str, int | None, int | None], ...] = (
    ("BAY5", "5 Bay Hours", "hours", 5, 365),
    ("BAY10", "10 Bay Hours", "hours", 10, 365),
    ("BAY20", "Winter Pass - 20 Bay Hours", "hours", 20, 180),
    ("LESSON3", "3 Lesson Pack", "uses", 3, 365),
    ("LESSON5", "5 Lesson Pack", "uses", 5, 365),
    ("LESSON10", "10 Lesson Pack (PGA Pro)", "uses", 10, 540),
    ("SIM10", "10 Simulator Rounds", "uses", 10, 365),
    ("RANGE20", "20 Range Buckets", "uses", 20, None),
    ("MEMBER", "Unlimited Range Membership", "uses", None, 365),
)


@dataclass(frozen=True, slots=True)
class SampleClient:
    client_no: int
    given_name: str
    family_name: str
    email_address: str | None
    mobile: str | None
    archived: bool
    created_on: datetime
    modified_on: datetime


@dataclass(frozen=True, slots=True)
class SamplePackage:
    pkg_no: int
    client_no: int
    product_code: str
    product_name: str
    sold_on: date
    valid_until: date | None
    hours_purchased: Decimal | None
    hours_consumed: Decimal | None
    sessions_purchased: int | None
    sessions_consumed: int | None
    state: str
    modified_on: datetime


def _phone(rng: random.Random) -> str:
    exchange = rng.choice([x for x in range(200, 1000) if x % 100 != 11 and x != 555])
    fmt = rng.choice(PHONE_FORMATS)
    return fmt.format(a=rng.choice(AREA_CODES), e=exchange, n=f"{rng.randrange(10_000):04d}")


def _email(rng: random.Random, first: str, last: str, taken: set[str]) -> str:
    local = rng.choice(
        (f"{first}.{last}", f"{first[0]}{last}", f"{first}{last}{rng.randrange(100)}", first)
    )
    # "José O'Brien" signs up as jose.obrien@...
    local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode().replace("'", "")
    email = f"{local}@{rng.choice(DOMAINS)}"
    while email.lower() in taken:
        email = f"{local}{rng.randrange(1000)}@{rng.choice(DOMAINS)}"
    taken.add(email.lower())
    case = rng.random()
    if case < 0.6:
        return email.lower()
    if case < 0.9:
        return email  # As typed: "Mary.Smith@gmail.com"
    return email.upper()


def _at(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(rng.randrange(7, 22), rng.randrange(60)), UTC)


def sample_clients(count: int, rng: random.Random, today: date) -> list[SampleClient]:
    """``count`` clients numbered from 1; about 1 in 50 is a duplicate of an earlier one."""
    clients: list[SampleClient] = []
    taken: set[str] = set()
    for no in range(1, count + 1):
        created = today - timedelta(days=rng.randrange(30, 2000))
        modified = _at(created + timedelta(days=rng.randrange((today - created).days)), rng)
        roll = rng.random()
        if clients and roll < 0.02:
            # The same person entered again at a later visit; half of these duplicates
            # have since been archived (hidden by the view), half are still live.
            twin = rng.choice(clients)
            email = twin.email_address.swapcase() if twin.email_address else None
            clients.append(
                SampleClient(
                    client_no=no,
                    given_name=twin.given_name,
                    family_name=twin.family_name,
                    email_address=email,
                    mobile=_phone(rng),
                    archived=rng.random() < 0.5,
                    created_on=_at(created, rng),
                    modified_on=modified,
                )
            )
            continue
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        phone = _phone(rng) if rng.random() < 0.88 else None
        if clients and roll < 0.05 and clients[-1].mobile:
            # A household: same family name and phone as the client before.
            last, phone = clients[-1].family_name, clients[-1].mobile
        email = _email(rng, first, last, taken) if rng.random() < 0.92 else None
        clients.append(
            SampleClient(
                client_no=no,
                given_name=first,
                family_name=last,
                email_address=email,
                mobile=phone,
                archived=rng.random() < 0.01,
                created_on=_at(created, rng),
                modified_on=modified,
            )
        )
    return clients


def sample_packages(
    clients: list[SampleClient], rng: random.Random, today: date
) -> list[SamplePackage]:
    """0 to 4 packages per client (about 1 in 4 has none)."""
    packages: list[SamplePackage] = []
    for client in clients:
        if rng.random() < 0.25:
            continue
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            code, name, unit, total, valid_days = rng.choice(PRODUCTS)
            sold = today - timedelta(days=rng.randrange(0, 540))
            until = sold + timedelta(days=valid_days) if valid_days else None
            if total is None:
                used: Decimal | None = None
            elif rng.random() < 0.2:
                used = Decimal(total)  # used up
            elif unit == "hours":
                used = Decimal(rng.randrange(0, total * 2)) / 2  # half-hour slots
            else:
                used = Decimal(rng.randrange(0, total))
            state = rng.choices("ACF", weights=(95, 3, 2))[0]
            hours = unit == "hours"
            packages.append(
                SamplePackage(
                    pkg_no=len(packages) + 1,
                    client_no=client.client_no,
                    product_code=code,
                    product_name=name,
                    sold_on=sold,
                    valid_until=until,
                    hours_purchased=Decimal(total) if hours and total else None,
                    hours_consumed=used if hours else None,
                    sessions_purchased=total if not hours else None,
                    sessions_consumed=int(used) if not hours and used is not None else None,
                    state=state,
                    modified_on=_at(
                        sold + timedelta(days=rng.randrange((today - sold).days + 1)), rng
                    ),
                )
            )
    return packages
