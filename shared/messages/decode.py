"""Validate a large JSON body by reading only the fields a model declares.

A Shopify order is ~28 KB of JSON of which crmsync reads about fifteen fields;
pydantic's ``model_validate_json`` parses all of it (about a seventh of intake's CPU
per webhook, issue 11). :func:`validate_json` lets msgspec's decoder walk the
document in C, keeping the raw JSON text of the declared top-level keys only
(``msgspec.Raw``), and hands pydantic a small document of those keys: the same
validation by the same model, on the same JSON text of each field, so the same
result and the same errors (type, location, message; only the ``input`` of a
missing-field error, the object around it, holds just the declared keys: nothing
crmsync shows, since problems and logs name the location and the message).

It takes the fast path only where that is provably the same as validating the whole
body, and validates the whole body with pydantic otherwise:

- the model ignores unknown keys (``extra="ignore"``, pydantic's default) and has no
  model-level ``before``/``wrap`` validator (which could read any key), and every
  field is found by its name or its plain string alias;
- the body is valid UTF-8 (msgspec does not check the bytes of the strings it skips;
  pydantic refuses invalid UTF-8 anywhere);
- msgspec decodes it without error. Any error (malformed JSON, not an object, NaN,
  which pydantic accepts and msgspec does not) sends the body to pydantic whole, so
  every refusal is pydantic's own, with its message and field locations.

For a duplicated key both keep the last value. The intake (``parse_body``) and the
syncer (``CloudEvent.data_as``) validate with this same function, so a body intake
accepts is one the syncer accepts.
"""

from __future__ import annotations

import itertools
from typing import TypeVar

import msgspec
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

# Below this size pydantic alone is faster than msgspec's walk plus a second, small parse.
MIN_FAST_BYTES = 2048

_UNSUPPORTED = object()
_decoders: dict[type[BaseModel], object] = {}
_ids = itertools.count()


def validate_json(model: type[M], body: bytes) -> M:
    """``model.model_validate_json(body)``, reading only the keys ``model`` declares.

    Returns:
        The validated model, equal to what ``model_validate_json`` returns.

    Raises:
        pydantic.ValidationError: exactly as ``model.model_validate_json(body)``
            raises it (the whole body is validated by pydantic whenever the fast
            path cannot decide).
    """
    if len(body) >= MIN_FAST_BYTES:
        decoder = _decoder(model)
        if isinstance(decoder, _Subset):
            small = decoder.subset(body)
            if small is not None:
                return model.model_validate_json(small)
    return model.model_validate_json(body)


class _Subset:
    """msgspec's decoder of ``model``'s top-level keys, each kept as raw JSON."""

    def __init__(self, keys: list[str]) -> None:
        # Struct fields must be identifiers: f0, f1, ... renamed to the JSON keys.
        names = [f"f{i}" for i in range(len(keys))]
        struct = msgspec.defstruct(
            f"_Subset{next(_ids)}",
            [(name, msgspec.Raw, msgspec.UNSET) for name in names],
            rename=dict(zip(names, keys, strict=True)),
        )
        self._fields = list(zip(names, [msgspec.json.encode(k) for k in keys], strict=True))
        self._decoder = msgspec.json.Decoder(struct)

    def subset(self, body: bytes) -> bytes | None:
        """The body's declared keys as a small JSON object; None when undecided."""
        try:
            body.decode("utf-8")
            decoded = self._decoder.decode(body)
        except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
            return None
        parts = [
            key + b":" + bytes(raw)
            for name, key in self._fields
            if (raw := getattr(decoded, name)) is not msgspec.UNSET
        ]
        return b"{" + b",".join(parts) + b"}"


def _decoder(model: type[BaseModel]) -> object:
    decoder = _decoders.get(model)
    if decoder is None:
        keys = _plain_keys(model)
        decoder = _decoders[model] = _UNSUPPORTED if keys is None else _Subset(keys)
    return decoder


def _plain_keys(model: type[BaseModel]) -> list[str] | None:
    """The JSON keys ``model`` can read, or None when reading a subset could differ."""
    if model.model_config.get("extra", "ignore") != "ignore":
        return None
    if any(
        d.info.mode in ("before", "wrap")
        for d in model.__pydantic_decorators__.model_validators.values()
    ):
        return None
    if model.__pydantic_root_model__:
        return None
    keys: list[str] = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias if field.validation_alias is not None else field.alias
        if alias is not None and not isinstance(alias, str):
            return None  # AliasPath / AliasChoices
        keys.append(name)
        if alias is not None and alias != name:
            keys.append(alias)
    return list(dict.fromkeys(keys))
