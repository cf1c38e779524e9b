"""Membership provider actions: the outbox event that asks a provider to apply a tier."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["shopify", "commerce7"]
ActionKind = Literal[
    "add_membership", "upgrade_membership", "downgrade_membership", "cancel_membership"
]


def membership_action_type(provider: str) -> str:
    """Event type (= routing key) of a provider action: ``membership.action.shopify``."""
    return f"membership.action.{provider}"


class MembershipActionRequested(BaseModel):
    """``{"actionId": 17, "provider": "shopify", "kind": "add_membership"}``.

    The ``provider_actions`` row is the source of truth; the event only names it. Its
    handler makes the provider equal to the customer's enrolment at the time it runs,
    whatever the kind says (the kind says why it was queued).
    """

    model_config = ConfigDict(populate_by_name=True)

    action_id: int = Field(alias="actionId")
    provider: Provider
    kind: ActionKind
