"""What the syncer's handlers depend on, built once in ``main`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared.clients.commerce7 import Commerce7Client
from shared.clients.shopify import ShopifyClient
from shared.settings import SyncerSettings


@dataclass(frozen=True)
class SyncerDeps:
    settings: SyncerSettings
    pool: asyncpg.Pool
    shopify: ShopifyClient
    commerce7: Commerce7Client
