"""The meter's key cache on real SQLite: a refresh reads only the keys that changed, sees
disable / rotate / top-up from any process, and keeps unchanged records as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from manxue.accounting.keys import KeyStore, hash_key
from manxue.accounting.meter import KeyCache
from manxue.store.db import open_engine
from manxue.store.tables import api_keys


def test_a_refresh_reads_only_what_changed(tmp_path: Path) -> None:
    store = KeyStore(open_engine(f"sqlite:///{tmp_path / 'keys.db'}"))
    made = [store.create("acme", balance=Decimal(1), rpm=10) for _ in range(50)]
    cache = KeyCache(store)
    cache.load()
    with store.engine.begin() as c:  # made an hour ago (beyond the overlap)
        c.execute(sa.update(api_keys).values(updated_at=datetime.now(UTC) - timedelta(hours=1)))
    assert len(cache.by_hash) == 50
    before = dict(cache.by_id)
    assert cache.refresh() == 0  # nothing changed: nothing read

    (a, _), (b, b_secret), (c, _) = made[:3]
    store.set_disabled(a.id)
    store.rotate(b.id)
    store.topup(c.id, Decimal(2))
    assert cache.refresh() == 3
    assert cache.by_id[a.id].disabled
    assert hash_key(b_secret) not in cache.by_hash  # the old secret stops working
    assert cache.by_hash[store.get(b.id).key_hash].id == b.id
    assert cache.by_id[c.id].credits_nano == 3 * 10**9
    unchanged = made[10][0].id
    assert cache.by_id[unchanged] is before[unchanged]  # the same record: plans stay cached
    assert len(cache.by_hash) == len(cache.by_id) == 50

    cache._refreshes = KeyCache.FULL_EVERY - 1  # now and then, every key is read again
    assert cache.refresh() == 50


def test_a_change_stamped_a_little_in_the_past_is_seen(tmp_path: Path) -> None:
    store = KeyStore(open_engine(f"sqlite:///{tmp_path / 'keys.db'}"))
    rec, _ = store.create("acme", rpm=10)
    cache = KeyCache(store)
    cache.load()
    assert cache.refresh() == 1  # created within the overlap: read again, unchanged
    # another host changed the key; its clock runs 30 s behind ours (or its commit was slow)
    with store.engine.begin() as c:
        c.execute(sa.update(api_keys).where(api_keys.c.id == rec.id)
                  .values(rpm=99, updated_at=datetime.now(UTC) - timedelta(seconds=30)))
    cache.refresh()
    assert cache.by_id[rec.id].rpm == 99
    # a change stamped before the overlap waits for the next full read
    with store.engine.begin() as c:
        c.execute(sa.update(api_keys).where(api_keys.c.id == rec.id)
                  .values(rpm=7, updated_at=datetime.now(UTC) - timedelta(hours=1)))
    cache.refresh()
    assert cache.by_id[rec.id].rpm == 99
    cache._refreshes = KeyCache.FULL_EVERY - 1
    cache.refresh()
    assert cache.by_id[rec.id].rpm == 7
