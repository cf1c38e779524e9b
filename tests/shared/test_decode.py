"""``validate_json`` (shared/messages/decode.py) equals pydantic's ``model_validate_json``
on the real provider bodies and on every way we could think of to break them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from shared.messages import decode
from shared.messages.credits import CreditsNotification
from shared.messages.decode import validate_json
from shared.messages.orders import Commerce7OrderWebhook, ShopifyOrder, ShopifyRefund

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ORDER = (FIXTURES / "shopify_order_450789469.json").read_bytes()
COMMERCE7 = (FIXTURES / "commerce7_webhook_order_create.json").read_bytes()
REFUND = json.dumps(
    json.loads((FIXTURES / "shopify_order_get_450789469.response.json").read_bytes())["order"][
        "refunds"
    ][0]
).encode()


def outcome(model: type[BaseModel], body: bytes) -> tuple[str, Any]:
    """What validating gives: the model's dump, or pydantic's errors (without urls)."""
    try:
        return "ok", model.model_validate_json(body).model_dump()
    except ValidationError as exc:
        return "error", _comparable(exc)


def _comparable(exc: ValidationError) -> list[dict[str, Any]]:
    # An exception in ``ctx`` compares by identity: compare its text. A missing field's
    # ``input`` is the object around it, of which the fast path keeps the declared keys.
    return [
        {
            **e,
            "ctx": {k: str(v) for k, v in e.get("ctx", {}).items()},
            "input": None if e["type"] == "missing" else e["input"],
        }
        for e in exc.errors(include_url=False)
    ]


def fast_outcome(model: type[BaseModel], body: bytes) -> tuple[str, Any]:
    try:
        return "ok", validate_json(model, body).model_dump()
    except ValidationError as exc:
        return "error", _comparable(exc)


def test_the_real_bodies_take_the_fast_path() -> None:
    # Otherwise every equivalence below would hold trivially.
    for model, body in ((ShopifyOrder, ORDER), (Commerce7OrderWebhook, COMMERCE7)):
        assert len(body) >= decode.MIN_FAST_BYTES
        subset = decode._decoder(model)
        assert isinstance(subset, decode._Subset)
        small = subset.subset(body)
        assert small is not None and len(small) < len(body)
        assert fast_outcome(model, body) == outcome(model, body)


def _mutations(body: bytes) -> dict[str, bytes]:
    doc = json.loads(body)
    padding = "x" * decode.MIN_FAST_BYTES  # keep small bodies on the fast path
    out: dict[str, bytes] = {}
    for key in list(doc):
        for label, value in (("null", None), ("text", "not a value"), ("int", -1), ("list", [])):
            changed = dict(doc, **{key: value}, _padding=padding)
            out[f"{key}={label}"] = json.dumps(changed).encode()
        without = {k: v for k, v in doc.items() if k != key}
        out[f"{key} missing"] = json.dumps(dict(without, _padding=padding)).encode()
    text = body.rstrip()
    assert text.endswith(b"}")
    out.update(
        {
            "invalid utf-8 in a skipped string": text[:-1] + b',"zz":"\xff\xfe"}',
            "overlong utf-8 in a skipped string": text[:-1] + b',"zz":"\xc0\xaf"}',
            "invalid utf-8 in a skipped key": text[:-1] + b',"\xff":1}',
            "lone surrogate in a skipped string": text[:-1] + b',"zz":"\\ud800abc"}',
            "NaN in a skipped field": text[:-1] + b',"zz":NaN}',
            "Infinity in a skipped field": text[:-1] + b',"zz":Infinity}',
            "trailing comma in a skipped array": text[:-1] + b',"zz":[1,2,]}',
            "bad escape in a skipped string": text[:-1] + b',"zz":"\\q"}',
            "control character in a skipped string": text[:-1] + b',"zz":"a\x01b"}',
            "a huge skipped integer": text[:-1] + b',"zz":123456789012345678901234567890}',
            "a huge skipped exponent": text[:-1] + b',"zz":1e999}',
            "deeply nested skipped value": text[:-1] + b',"zz":' + b"[" * 3000 + b"]" * 3000 + b"}",
            "trailing characters": text + b" x",
            "a byte-order mark": b"\xef\xbb\xbf" + text,
            "an array": b"[" + text + b"]",
            "truncated": text[:-100],
            "duplicated declared key, last wins": text[:-1] + b',"id":7}',
            "NUL escaped in a skipped string": text[:-1] + b',"zz":"\\u0000"}',
        }
    )
    return out


@pytest.mark.parametrize(
    ("model", "body"),
    [(ShopifyOrder, ORDER), (Commerce7OrderWebhook, COMMERCE7), (ShopifyRefund, REFUND)],
    ids=["shopify-order", "commerce7-order", "shopify-refund"],
)
def test_same_result_and_same_errors_as_pydantic(model: type[BaseModel], body: bytes) -> None:
    mutations = _mutations(body)
    assert len(mutations) > 40
    for label, mutated in mutations.items():
        assert fast_outcome(model, mutated) == outcome(model, mutated), label


def test_models_a_subset_could_misread_are_validated_whole() -> None:
    class Forbids(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: int

    class Allows(BaseModel):
        model_config = ConfigDict(extra="allow")
        id: int

    class ReadsAnyKey(BaseModel):
        id: int

        @model_validator(mode="before")
        @classmethod
        def needs_other(cls, data: Any) -> Any:
            if isinstance(data, dict) and "other" not in data:
                raise ValueError("other is required")
            return data

    body = json.dumps({"id": 1, "other": "y" * decode.MIN_FAST_BYTES}).encode()
    for model in (Forbids, Allows, ReadsAnyKey):
        assert decode._decoder(model) is decode._UNSUPPORTED
        assert fast_outcome(model, body) == outcome(model, body)


def test_a_small_app_event_is_validated_as_before() -> None:
    body = json.dumps({"idempotencyKey": "k-1", "reason": "admin_refund", "contacts": []}).encode()
    assert fast_outcome(CreditsNotification, body) == outcome(CreditsNotification, body)
