"""What the syncer's handlers depend on, built once in ``main`` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from services.syncer.credits_batch import CreditBatcher
from services.syncer.hubspot.pusher import ContactPusher
from services.syncer.packages.crm import CrmReader
from shared.broker import Broker
from shared.clients.commerce7 import Commerce7Client
from shared.clients.hubspot import HubSpotClient
from shared.clients.repcard import RepCardClient
from shared.clients.shopify import ShopifyClient
from shared.settings import SyncerSettings


@dataclass
class SyncerDeps:
    settings: SyncerSettings
    pool: asyncpg.Pool
    shopify: ShopifyClient
    commerce7: Commerce7Client
    hubspot: HubSpotClient
    crm: CrmReader
    broker: Broker
    # W5: RepCard's read API (this replica's share of the key's budget).
    repcard: RepCardClient
    # Credit changes on their way to HubSpot (set up by the syncer).
    contact_pusher: ContactPusher = field(init=False)
    # Single-contact credit notifications, batched when this replica is behind.
    credit_batcher: CreditBatcher = field(init=False)
