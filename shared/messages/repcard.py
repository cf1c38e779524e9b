"""W5 RepCard pull: the chunk messages every syncer replica shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPCARD_CHUNK = "repcard.chunk"


class RepCardChunk(BaseModel):
    """``repcard.chunk``: one share of one entity's pull, counted on ``runId``.

    ``{"runId": 17, "entity": "customers", "kind": "pages", "chunk": 3, "pages": [11, 12]}``.
    ``kind`` ``plan`` starts the entity (page 1, then its other pages as chunks);
    ``pages`` fetches those pages of a list; ``customers`` fetches the status logs of
    ``customerIds``.
    """

    model_config = ConfigDict(populate_by_name=True)

    run_id: int = Field(alias="runId")
    entity: str
    kind: Literal["plan", "pages", "customers"]
    chunk: int = 0
    pages: list[int] = Field(default_factory=list)
    customer_ids: list[int] = Field(default_factory=list, alias="customerIds")
