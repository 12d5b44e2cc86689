"""Build the meter from settings: database, counters (memory or Redis), journal, prices."""

from __future__ import annotations

import os

from manxue.accounting.counters import Counters, LocalCounters
from manxue.accounting.keys import KeyStore
from manxue.accounting.ledger import LedgerWriter
from manxue.accounting.meter import Meter
from manxue.accounting.prices import PriceBook
from manxue.accounting.redis_counters import RedisCounters
from manxue.settings import Settings
from manxue.store.db import open_engine


def build_meter(settings: Settings) -> Meter:
    engine = open_engine(settings.resolved_database_url())
    counters: Counters
    if settings.redis_url:
        counters = RedisCounters(settings.redis_url,
                                 namespace=os.environ.get("MANXUE_REDIS_NAMESPACE", "manxue"))
    else:
        counters = LocalCounters()
    b = settings.billing
    writer = LedgerWriter(engine, settings.resolved_data_dir() / "journal", b.flush_interval,
                          b.flush_batch, segment_bytes=b.journal_segment_mb * 1024 * 1024)
    prices = PriceBook.from_settings(settings)
    store = KeyStore(engine, prices.lists, b.default_price_list, b.currency)
    return Meter(settings, store, counters, writer, prices)
