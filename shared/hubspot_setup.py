"""The HubSpot properties crmsync writes, and making an account have them (idempotently).

crmsync writes these properties (services/syncer/hubspot: contacts by ``email``, mock
exams by ``exam_ref``, bookings by ``booking_ref``); HubSpot refuses a write to a
property that does not exist and an upsert by one that is not unique ("Unable to perform
update/upsert by non-unique ... property", API.md §3.3), so they must exist before the
first batch sync. :func:`inspect` reads what the account has (read-only: one properties
list per object type, one schema read per custom object); :func:`apply` creates what is
missing, each custom property in crmsync's own property group ``crmsync``. Running it
twice creates nothing the second time; a 409 from a concurrent run counts as present.

What setup cannot fix, it reports: a custom object that does not exist (create it in
HubSpot, Settings > Objects, and set ``CRMSYNC_HUBSPOT_*_OBJECT_TYPE``), an existing
property that should be unique but is not (``hasUniqueValue`` cannot change later,
API.md §6.1), a booking object without association definitions to contacts or mock exams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.clients.hubspot_properties import (
    HubSpotProperty,
    HubSpotSchemaClient,
    ObjectSchema,
    PropertyDefinition,
    PropertyExistsError,
    PropertyGroup,
)
from shared.messages.credits import CREDIT_FIELDS
from shared.settings import ProviderSettings

CONTACTS = "contacts"
CONTACTS_TYPE_ID = "0-1"
# crmsync's own property group on every object type it writes (HubSpot's guide: "if your
# integration creates custom properties, a custom property group" keeps them together).
GROUP = PropertyGroup(name="crmsync", label="crmsync", display_order=-1)

_CREDIT_LABELS = {
    "sj_credits": "SJ credits",
    "cs_credits": "CS credits",
    "sjmini_credits": "SJ mini credits",
    "mock_discussion_token": "Mock discussion tokens",
    "shared_mock_credits": "Shared mock credits",
}


def _text(name: str, label: str, *, unique: bool = False) -> PropertyDefinition:
    return PropertyDefinition(
        name=name,
        label=label,
        type="string",
        field_type="text",
        group_name=GROUP.name,
        has_unique_value=unique,
    )


def _number(name: str, label: str) -> PropertyDefinition:
    return PropertyDefinition(
        name=name,
        label=label,
        type="number",
        field_type="number",
        group_name=GROUP.name,
        number_display_hint="unformatted",
    )


@dataclass(frozen=True)
class ObjectRequirement:
    """One object type crmsync writes and the properties it needs there.

    Attributes:
        label: for people (``bookings``).
        object_type: ``contacts`` or a custom object's type id (``2-1001``).
        setting: the variable naming a custom object's type id, None for contacts.
        properties: the custom properties crmsync writes (HubSpot's own, such as
            ``email``, are not listed: every account has them).
        associated_to: object types the schema must have association definitions to.
    """

    label: str
    object_type: str
    setting: str | None
    properties: tuple[PropertyDefinition, ...]
    associated_to: tuple[str, ...] = ()

    @property
    def custom(self) -> bool:
        return self.setting is not None


def required_objects(settings: ProviderSettings) -> list[ObjectRequirement]:
    """Contacts, mock exams, bookings, in that order, with the properties crmsync writes
    (``services/syncer/hubspot``: ``contact_properties``, ``_exam_kind``,
    ``_booking_kind``); ``booking_ref`` and ``exam_ref`` unique (crmsync upserts by them)."""
    exams, bookings = settings.hubspot_mock_exam_object_type, settings.hubspot_booking_object_type
    contact_props = (
        _text("student_id", "Student ID"),
        *(_number(f, _CREDIT_LABELS[f]) for f in CREDIT_FIELDS),
    )
    exam_props = (
        _text("exam_ref", "Exam ref", unique=True),
        _text("exam_name", "Exam name"),
        PropertyDefinition(
            name="exam_date",
            label="Exam date",
            type="date",
            field_type="date",
            group_name=GROUP.name,
        ),
        _number("total_bookings", "Total bookings"),
    )
    booking_props = (
        _text("booking_ref", "Booking ref", unique=True),
        _text("status", "Status"),
        PropertyDefinition(
            name="attended",
            label="Attended",
            type="bool",
            field_type="booleancheckbox",
            group_name=GROUP.name,
        ),
        _text("student_id", "Student ID"),
        _text("exam_ref", "Exam ref"),
    )
    return [
        ObjectRequirement("contacts", CONTACTS, None, contact_props),
        ObjectRequirement("mock exams", exams, "CRMSYNC_HUBSPOT_MOCK_EXAM_OBJECT_TYPE", exam_props),
        ObjectRequirement(
            "bookings",
            bookings,
            "CRMSYNC_HUBSPOT_BOOKING_OBJECT_TYPE",
            booking_props,
            associated_to=(CONTACTS_TYPE_ID, exams),
        ),
    ]


State = Literal["present", "missing", "conflict", "different", "created"]


@dataclass
class PropertyState:
    """One required property in the account: ``present``, ``missing`` (setup creates it),
    ``conflict`` (setup cannot fix it), ``different`` (exists with another type: a
    warning), ``created`` (by this setup run)."""

    definition: PropertyDefinition
    state: State
    detail: str = ""


@dataclass
class ObjectState:
    """One object type: its schema problems (custom objects), and each property's state."""

    requirement: ObjectRequirement
    problems: list[str] = field(default_factory=list)
    properties: list[PropertyState] = field(default_factory=list)
    group_created: bool = False

    def with_state(self, *states: State) -> list[PropertyState]:
        return [p for p in self.properties if p.state in states]


@dataclass
class SetupReport:
    """What the account has (after :func:`apply`: and what was created)."""

    objects: list[ObjectState]

    def with_state(self, *states: State) -> list[tuple[ObjectState, PropertyState]]:
        return [(o, p) for o in self.objects for p in o.with_state(*states)]

    @property
    def problems(self) -> list[str]:
        """Everything setup cannot fix: missing schemas, associations, conflicts."""
        found = [f"{o.requirement.label}: {p}" for o in self.objects for p in o.problems]
        found += [
            f"{o.requirement.label}.{p.definition.name}: {p.detail}"
            for o, p in self.with_state("conflict")
        ]
        return found


def _compare(definition: PropertyDefinition, found: HubSpotProperty | None) -> PropertyState:
    if found is None or found.archived:
        return PropertyState(definition, "missing")
    if definition.has_unique_value and not found.has_unique_value:
        detail = (
            "exists without hasUniqueValue, which HubSpot cannot change later: delete the"
            " property in HubSpot (Settings > Properties) and run setup again"
        )
        return PropertyState(definition, "conflict", detail)
    if found.type and found.type != definition.type:
        detail = f"exists as {found.type}, crmsync writes {definition.type} values"
        return PropertyState(definition, "different", detail)
    return PropertyState(definition, "present")


def _schema_problems(requirement: ObjectRequirement, schema: ObjectSchema | None) -> list[str]:
    if schema is None:
        return [
            f"no custom object {requirement.object_type} in this account ({requirement.setting});"
            " create it in HubSpot (Settings > Objects) and set its type id"
        ]
    problems = []
    ends = {a.to_object_type_id for a in schema.associations}
    ends |= {a.from_object_type_id for a in schema.associations}
    for other in requirement.associated_to:
        if other not in ends:
            problems.append(
                f"schema {requirement.object_type} has no association definition to {other};"
                " add it in HubSpot (the object's Associations settings)"
            )
    return problems


async def inspect(client: HubSpotSchemaClient, settings: ProviderSettings) -> SetupReport:
    """Read the account: custom object schemas, then each object type's properties.

    Raises:
        ProviderRejectedError, ProviderUnavailableError: HubSpot refused or failed a
            read (401 bad token, 403 missing scope, ...).
    """
    report = SetupReport([])
    for requirement in required_objects(settings):
        state = ObjectState(requirement)
        report.objects.append(state)
        if requirement.custom:
            schema = await client.get_schema(requirement.object_type)
            state.problems = _schema_problems(requirement, schema)
            if schema is None:
                continue
        existing = {p.name: p for p in await client.list_properties(requirement.object_type)}
        state.properties = [_compare(d, existing.get(d.name)) for d in requirement.properties]
    return report


async def apply(client: HubSpotSchemaClient, report: SetupReport) -> SetupReport:
    """Create the missing properties of ``report`` (from :func:`inspect`), creating the
    ``crmsync`` group of an object type first when it has none. Marks each one
    ``created``; a 409 (created meanwhile) is re-read and compared instead.

    Raises:
        ProviderRejectedError, ProviderUnavailableError: HubSpot refused a create (403:
            the token lacks ``crm.schemas.*.write``); what was created before stays.
    """
    for state in report.objects:
        missing = state.with_state("missing")
        if not missing:
            continue
        object_type = state.requirement.object_type
        if await client.get_group(object_type, GROUP.name) is None:
            try:
                await client.create_group(object_type, GROUP)
                state.group_created = True
            except PropertyExistsError:
                pass
        for item in missing:
            try:
                await client.create_property(object_type, item.definition)
            except PropertyExistsError:
                found = await client.get_property(object_type, item.definition.name)
                compared = _compare(item.definition, found)
                item.state, item.detail = compared.state, compared.detail
            else:
                item.state = "created"
    return report
