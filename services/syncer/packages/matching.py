"""Which CRM customer is this app profile? Normalisation and the match rules.

Rules, in order; the first that finds customers decides:

1. **email**, compared lowercased and trimmed;
2. **phone**, both sides normalised to E.164 with ``phonenumbers`` (numbers written
   without a country code are read in the default region);
3. **full name** (first and last, trimmed, case-insensitive), and only when exactly
   one CRM customer has it: a name is the weakest evidence.

A step that finds several customers keeps those that another key of the profile
corroborates (the same phone, else the same name, for email; the same name for phone);
if exactly one is left it is the match, otherwise the profile stays **unmatched** with
the reason.
Ambiguity never falls through to a weaker rule: if the email names two customers and
neither is corroborated, a name match elsewhere would contradict the email.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import phonenumbers

from services.syncer.packages.crm import MAX_CANDIDATES, PHONE_SUFFIX_DIGITS, CrmCustomer

Method = Literal["email", "phone", "name"]


def normalise_email(raw: str | None) -> str | None:
    """``"  Ada@Example.COM "`` → ``"ada@example.com"``; None if empty or no ``@``."""
    if raw is None:
        return None
    email = raw.strip().lower()
    return email if "@" in email else None


def normalise_phone(raw: str | None, default_region: str) -> str | None:
    """Any way of writing a phone number → E.164 (``"+14155550123"``), else None.

    Args:
        raw: ``"(415) 555-0123"``, ``"415.555.0123"``, ``"+1 415 555 0123"``,
            ``"020 7946 0958"`` (with ``default_region="GB"``)...
        default_region: ISO 3166 region for numbers without a country code.

    The number must be *possible* (right length for its country), not *valid* (in an
    allocated range): ``phonenumbers``' range data lags reality, and an exact E.164
    comparison can only ever pair a number with itself. An extension is dropped.
    """
    if raw is None or not raw.strip():
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_suffix(e164: str) -> str | None:
    """The last digits every written form of the number ends with (see ``crm.py``);
    None for numbers too short to have them."""
    national = phonenumbers.national_significant_number(phonenumbers.parse(e164))
    return national[-PHONE_SUFFIX_DIGITS:] if len(national) >= PHONE_SUFFIX_DIGITS else None


def normalise_name(raw: str | None) -> str | None:
    """Trimmed and lowercased, as the CRM query compares (``lower(btrim(...))``)."""
    if raw is None or not raw.strip():
        return None
    return raw.strip().lower()


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """A profile's keys, normalised (build with :meth:`of`)."""

    email: str | None
    phone_e164: str | None
    first_name: str | None
    last_name: str | None

    @classmethod
    def of(
        cls,
        *,
        email: str | None,
        phone_e164: str | None,
        first_name: str | None,
        last_name: str | None,
    ) -> MatchKeys:
        first, last = normalise_name(first_name), normalise_name(last_name)
        return cls(normalise_email(email), phone_e164, first, last)


@dataclass(frozen=True, slots=True)
class MatchResult:
    """A customer id and the rule that found it, or why there is none."""

    customer_id: str | None
    method: Method | None
    reason: str | None = None

    @property
    def matched(self) -> bool:
        return self.customer_id is not None


class CustomerDirectory(Protocol):
    """The CRM lookups matching needs (:class:`~services.syncer.packages.crm.CrmReader`)."""

    default_region: str

    async def customers_by_email(self, email: str) -> list[CrmCustomer]: ...

    async def customers_by_phone_suffix(self, suffix: str) -> list[CrmCustomer]: ...

    async def customers_by_name(self, first_name: str, last_name: str) -> list[CrmCustomer]: ...


def unmatched(reason: str) -> MatchResult:
    return MatchResult(None, None, reason)


async def match_customer(crm: CustomerDirectory, keys: MatchKeys) -> MatchResult:
    """Apply the rules (module docstring) to one profile.

    Raises:
        CrmUnavailableError: the CRM did not answer (nothing is decided then).
    """
    region = crm.default_region

    def same_phone(c: CrmCustomer) -> bool:
        return keys.phone_e164 is not None and normalise_phone(c.phone, region) == keys.phone_e164

    def same_name(c: CrmCustomer) -> bool:
        return (
            keys.first_name is not None
            and keys.last_name is not None
            and (normalise_name(c.first_name), normalise_name(c.last_name))
            == (keys.first_name, keys.last_name)
        )

    if keys.email:
        found = await crm.customers_by_email(keys.email)
        if found:
            return _decide(found, "email", same_phone, same_name)
    if keys.phone_e164 and (suffix := phone_suffix(keys.phone_e164)):
        candidates = await crm.customers_by_phone_suffix(suffix)
        if len(candidates) > MAX_CANDIDATES:
            return unmatched(f"phone matches more than {MAX_CANDIDATES} CRM customers")
        found = [c for c in candidates if same_phone(c)]
        if found:
            return _decide(found, "phone", same_name)
    if keys.first_name and keys.last_name:
        found = await crm.customers_by_name(keys.first_name, keys.last_name)
        if len(found) == 1:
            return MatchResult(found[0].id, "name")
        if found:
            return unmatched(f"name matches {_count(found)} CRM customers")
    if not (keys.email or keys.phone_e164 or (keys.first_name and keys.last_name)):
        return unmatched("profile has no email, phone or full name to match by")
    return unmatched("no CRM customer has this email, phone or full name")


def _decide(
    found: list[CrmCustomer], method: Method, *corroborations: Callable[[CrmCustomer], bool]
) -> MatchResult:
    """The one customer ``found``, or the one that the first deciding corroboration
    (tried in order: stronger evidence first) leaves; otherwise unmatched."""
    if len(found) == 1:
        return MatchResult(found[0].id, method)
    if len(found) <= MAX_CANDIDATES:
        for corroborated in corroborations:
            narrowed = [c for c in found if corroborated(c)]
            if len(narrowed) == 1:
                return MatchResult(narrowed[0].id, method)
    return unmatched(f"{method} matches {_count(found)} CRM customers")


def _count(found: list[CrmCustomer]) -> str:
    return f"more than {MAX_CANDIDATES}" if len(found) > MAX_CANDIDATES else str(len(found))
