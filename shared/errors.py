"""Errors every crmsync component raises, and what a consumer does with them.

Our exception hierarchy::

    CrmsyncError
    ├── PermanentError            retrying cannot help: dead-letter / mark failed now
    │   ├── InvalidEventError     the message itself is malformed (bad envelope or data)
    │   └── ProviderRejectedError a provider said no for good (400, 401, 403, 404, 422)
    ├── TransientError            try again later, after ``retry_after_s`` if given
    │   ├── ProviderUnavailableError  429, 5xx, timeouts, connection errors
    │   ├── BrokerUnavailableError    RabbitMQ unreachable or did not confirm
    │   │   └── PublishRefusedError   RabbitMQ answered, and said no (unroutable, nack)
    │   └── DatabaseUnavailableError  Postgres not reachable (yet)
    ├── QuotaExhaustedError       a provider's daily quota is spent: stop the run, say why
    └── TopologyMismatchError     a queue or exchange exists with other arguments

Consumers only ever need to ask one question, ``is it permanent?``; the provider
client decides, citing the provider's documentation, as healthchecks' transports do.
"""

from __future__ import annotations


class CrmsyncError(Exception):
    """Base class of every error crmsync raises on purpose."""


class PermanentError(CrmsyncError):
    """Retrying will not help; the message goes to its dead-letter queue."""


class InvalidEventError(PermanentError):
    """A message whose envelope or data does not validate.

    Args:
        message: what is wrong, naming the field path when there is one.
    """


class TransientError(CrmsyncError):
    """Worth retrying later.

    Args:
        message: what happened.
        retry_after_s: the provider's own ``Retry-After`` in seconds, if it sent one;
            the retry is then scheduled no earlier than that.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderError(CrmsyncError):
    """Mixin data for an error that came back from a provider's API.

    Attributes:
        provider: ``shopify``, ``commerce7``, ``hubspot``, ``repcard``.
        status: the HTTP status, or ``None`` for a network error or timeout.
        body: the start of the response body (at most 2 KB), for the action's
            ``last_error``; never a whole payload.
    """

    provider: str
    status: int | None
    body: str

    def _init_provider(self, provider: str, status: int | None, body: str) -> None:
        self.provider = provider
        self.status = status
        self.body = body[:2048]


class ProviderRejectedError(PermanentError, ProviderError):
    """The provider rejected the request for good (4xx other than 408 and 429)."""

    def __init__(self, provider: str, status: int | None, body: str, message: str = "") -> None:
        super().__init__(message or f"{provider} rejected the request: HTTP {status} {body[:200]}")
        self._init_provider(provider, status, body)


class ProviderUnavailableError(TransientError, ProviderError):
    """429, 5xx, timeout or connection failure; ``retry_after_s`` as the provider asked."""

    def __init__(
        self,
        provider: str,
        status: int | None,
        body: str,
        *,
        retry_after_s: float | None = None,
        message: str = "",
    ) -> None:
        super().__init__(
            message or f"{provider} unavailable: HTTP {status} {body[:200]}",
            retry_after_s=retry_after_s,
        )
        self._init_provider(provider, status, body)


class QuotaExhaustedError(ProviderError):
    """A provider's daily request quota is spent (HubSpot ``policyName: DAILY``).

    Retrying before the quota resets is pointless; a job stops and records why.
    """

    def __init__(self, provider: str, status: int | None, body: str, message: str = "") -> None:
        super().__init__(message or f"{provider} daily quota exhausted")
        self._init_provider(provider, status, body)


class BrokerUnavailableError(TransientError):
    """RabbitMQ is unreachable, or did not confirm a publish in time."""


class PublishRefusedError(BrokerUnavailableError):
    """RabbitMQ took the publish and refused it: returned as unroutable (no queue is
    bound for its routing key; we publish ``mandatory``) or nacked (e.g. a quorum queue
    at its length limit with ``x-overflow: reject-publish``).

    A subclass of :class:`BrokerUnavailableError` so that callers which only need "it
    did not get through" (intake's 503) need not care; the outbox relay does care: a
    refusal counts an attempt of that row, an unavailable broker counts nothing.
    """


class DatabaseUnavailableError(TransientError):
    """Postgres is not reachable, or the service has not opened its pool yet."""


class TopologyMismatchError(CrmsyncError):
    """A queue or exchange already exists with arguments other than those crmsync
    declares (RabbitMQ answers ``PRECONDITION_FAILED`` and closes the channel).

    Retrying helps only once an operator deletes or migrates the entity; the broker
    task keeps retrying with backoff and ``/readyz`` shows this error meanwhile.

    Attributes:
        kind: ``"queue"`` or ``"exchange"``.
        name: the entity's full name.
        argument: the argument that differs (``"x-delivery-limit"``), or ``""``.
        existing: its value on the broker, as RabbitMQ prints it (``"10"``, ``"none"``).
        declared: the value crmsync declares.
    """

    def __init__(
        self, message: str, *, kind: str, name: str, argument: str, existing: str, declared: str
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.argument = argument
        self.existing = existing
        self.declared = declared
