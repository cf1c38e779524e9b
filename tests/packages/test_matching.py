"""Unit: phone and email normalisation, and the match rules over a fake CRM directory."""

from __future__ import annotations

import pytest

from services.syncer.packages.crm import CrmCustomer
from services.syncer.packages.matching import (
    MatchKeys,
    match_customer,
    normalise_email,
    normalise_name,
    normalise_phone,
    phone_suffix,
)


@pytest.mark.parametrize(
    "raw",
    [
        "(415) 555-0123",
        "415.555.0123",
        "+1 415 555 0123",
        "4155550123",
        "415-555-0123",
        "1-415-555-0123",
        "+1 (415) 555-0123",
        "  415 555 0123 ",
        "415-555-0123 ext. 12",
    ],
)
def test_every_us_format_of_a_number_is_the_same_e164(raw: str) -> None:
    assert normalise_phone(raw, "US") == "+14155550123"


def test_a_national_number_is_read_in_the_default_region() -> None:
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalise_phone("+44 20 7946 0958", "US") == "+442079460958"


@pytest.mark.parametrize("raw", [None, "", "   ", "n/a", "12345", "call me", "+1 415 555"])
def test_what_cannot_be_a_phone_number_is_none(raw: str | None) -> None:
    assert normalise_phone(raw, "US") is None


def test_the_phone_suffix_is_the_last_seven_national_digits() -> None:
    assert phone_suffix("+14155550123") == "5550123"
    assert phone_suffix("+442079460958") == "9460958"


def test_emails_are_trimmed_and_lowercased() -> None:
    assert normalise_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"
    assert normalise_email("not-an-email") is None
    assert normalise_email(None) is None


def test_names_are_trimmed_and_lowercased() -> None:
    assert normalise_name("  Zoë ") == "zoë"
    assert normalise_name(" ") is None


class FakeDirectory:
    """Answers like CrmReader would over these customers."""

    default_region = "US"

    def __init__(self, *customers: CrmCustomer) -> None:
        self.customers = customers
        self.asked: list[str] = []

    async def customers_by_email(self, email: str) -> list[CrmCustomer]:
        self.asked.append("email")
        return [c for c in self.customers if (c.email or "").lower() == email]

    async def customers_by_phone_suffix(self, suffix: str) -> list[CrmCustomer]:
        self.asked.append("phone")
        return [
            c
            for c in self.customers
            if "".join(filter(str.isdigit, c.phone or "")).endswith(suffix)
        ]

    async def customers_by_name(self, first_name: str, last_name: str) -> list[CrmCustomer]:
        self.asked.append("name")
        return [
            c
            for c in self.customers
            if (normalise_name(c.first_name), normalise_name(c.last_name))
            == (first_name, last_name)
        ]


def customer(id: str, email=None, phone=None, first="Ada", last="Lovelace") -> CrmCustomer:
    return CrmCustomer(id, email, phone, first, last)


def keys(email=None, phone=None, first="Ada", last="Lovelace") -> MatchKeys:
    return MatchKeys.of(
        email=email, phone_e164=normalise_phone(phone, "US"), first_name=first, last_name=last
    )


async def test_email_is_tried_first_and_ignores_case() -> None:
    crm = FakeDirectory(customer("1", email="ADA@Example.com"), customer("2", phone="4155550123"))
    result = await match_customer(crm, keys(email="ada@EXAMPLE.com", phone="(415) 555-0123"))
    assert (result.customer_id, result.method) == ("1", "email")
    assert crm.asked == ["email"]


async def test_phone_matches_when_email_finds_nobody() -> None:
    crm = FakeDirectory(
        customer("1", email="other@example.com"), customer("2", phone="415.555.0123")
    )
    result = await match_customer(crm, keys(email="ada@example.com", phone="+1 415 555 0123"))
    assert (result.customer_id, result.method) == ("2", "phone")


async def test_a_phone_with_the_same_last_digits_but_another_area_code_does_not_match() -> None:
    crm = FakeDirectory(customer("1", phone="(212) 555-0123", first="Bob", last="Other"))
    result = await match_customer(crm, keys(phone="415-555-0123", first="Ada", last="Byron"))
    assert not result.matched
    assert result.reason == "no CRM customer has this email, phone or full name"


async def test_a_unique_full_name_matches_last() -> None:
    crm = FakeDirectory(customer("1", first=" ada ", last="LOVELACE"), customer("2", first="Bob"))
    result = await match_customer(crm, keys())
    assert (result.customer_id, result.method) == ("1", "name")


async def test_a_shared_full_name_is_unmatched_not_a_guess() -> None:
    crm = FakeDirectory(customer("1"), customer("2"))
    result = await match_customer(crm, keys())
    assert not result.matched and result.reason == "name matches 2 CRM customers"


async def test_a_duplicated_email_is_settled_by_the_phone_when_only_one_has_it() -> None:
    crm = FakeDirectory(
        customer("1", email="ada@example.com", phone="212 555 0199"),
        customer("2", email="ADA@example.com", phone="(415) 555-0123"),
    )
    result = await match_customer(crm, keys(email="ada@example.com", phone="4155550123"))
    assert (result.customer_id, result.method) == ("2", "email")


async def test_an_undecidable_email_does_not_fall_through_to_weaker_rules() -> None:
    crm = FakeDirectory(
        customer("1", email="ada@example.com", first="A"),
        customer("2", email="ada@example.com", first="B"),
        customer("3", phone="4155550123"),
    )
    result = await match_customer(crm, keys(email="ada@example.com", phone="4155550123"))
    assert not result.matched and result.reason == "email matches 2 CRM customers"
    assert crm.asked == ["email"]


async def test_a_household_phone_is_settled_by_the_name() -> None:
    crm = FakeDirectory(
        customer("1", phone="4155550123", first="Ada"),
        customer("2", phone="(415) 555-0123", first="Byron"),
    )
    result = await match_customer(crm, keys(phone="415.555.0123", first="Byron"))
    assert (result.customer_id, result.method) == ("2", "phone")


async def test_a_profile_without_keys_is_unmatched_with_that_reason() -> None:
    result = await match_customer(FakeDirectory(customer("1")), keys(first=None, last=None))
    assert result.reason == "profile has no email, phone or full name to match by"
