"""Reading RabbitMQ's ``PRECONDITION_FAILED`` text on a declare: which queue or
exchange, which argument, what exists and what was declared."""

from __future__ import annotations

import re

import aio_pika

from shared.errors import TopologyMismatchError

# RabbitMQ's text for PRECONDITION_FAILED on a declare (rabbit_misc equivalence checks):
# "inequivalent arg 'x-delivery-limit' for queue 'syncer.orders' in vhost '/': received
# '20' but current is '10'", or "... received none but current is the value '10' of type
# 'byte'".
INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<argument>[^']*)' for (?P<kind>queue|exchange) '(?P<name>[^']*)'"
    r" in vhost '[^']*': received (?:the value )?(?P<declared>'[^']*'|none)"
    r"(?: of type '[^']*')? but current is (?:the value )?(?P<existing>'[^']*'|none)"
)


def mismatch_from(exc: BaseException) -> TopologyMismatchError | None:
    """The :class:`TopologyMismatchError` ``exc`` is or stands for, else None."""
    if isinstance(exc, TopologyMismatchError):
        return exc
    if isinstance(exc, aio_pika.exceptions.ChannelPreconditionFailed):
        return mismatch(exc)
    return None


def mismatch(exc: BaseException) -> TopologyMismatchError:
    text = " ".join(str(a) for a in exc.args) or str(exc)
    match = INEQUIVALENT.search(text)
    if match is None:
        return TopologyMismatchError(
            f"RabbitMQ refused a declaration: {text}",
            kind="",
            name="",
            argument="",
            existing="",
            declared="",
        )
    kind, name, argument = match["kind"], match["name"], match["argument"]
    existing, declared = match["existing"].strip("'"), match["declared"].strip("'")
    if existing == "none":
        how = f"without {argument}, crmsync declares {argument}={declared}"
    elif declared == "none":
        how = f"with {argument}={existing}, crmsync declares none"
    else:
        how = f"with {argument}={existing}, crmsync declares {declared}"
    return TopologyMismatchError(
        f"{kind} {name} exists {how}; delete it (or migrate it) so crmsync can declare it",
        kind=kind,
        name=name,
        argument=argument,
        existing=existing,
        declared=declared,
    )
