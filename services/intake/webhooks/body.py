"""Reading and validating a request body with one parse."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.messages.decode import validate_json
from shared.problems import Problem, validation_problem

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate ``body`` as ``model`` straight from JSON bytes (only the keys the model
    declares are decoded: :mod:`shared.messages.decode`).

    Raises:
        Problem: 400 when the body is not JSON (or not an object), 422 naming the
            failing fields by JSON Pointer.
    """
    if not body.strip():
        raise Problem(400, "Bad Request", "empty body; a JSON object is required")
    try:
        return validate_json(model, body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise Problem(400, "Bad Request", f"malformed JSON: {first['msg']}") from exc
        if first["type"] == "model_type" and not first["loc"]:
            raise Problem(400, "Bad Request", "the body must be a JSON object") from exc
        raise validation_problem(exc) from exc
