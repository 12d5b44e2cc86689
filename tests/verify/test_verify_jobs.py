"""The job store keeps a bounded number of audits and drops the oldest finished one first."""

from __future__ import annotations

import asyncio

import pytest

from manxue.errors import RateLimited
from manxue.verify.config import AuditConfig
from manxue.verify.jobs import JobStore
from tests.verify.conftest import Bench


def _config(bench: Bench, seed: int) -> AuditConfig:
    return AuditConfig(base_url=bench.standins["deepseek"].url, model="deepseek-reasoner",
                       claim="deepseek-r1", checks=("tokenizer",), seed=seed)


def test_oldest_finished_job_is_evicted_and_running_jobs_are_capped(bench: Bench) -> None:
    async def scenario() -> None:
        store = JobStore(limit=2, running_limit=2)
        first = store.start(_config(bench, 1))
        second = store.start(_config(bench, 2))
        with pytest.raises(RateLimited):
            store.start(_config(bench, 3))
        for job in (first, second):
            assert job.task is not None
            await job.task
        assert first.status == "done" and first.result is not None
        third = store.start(_config(bench, 3))
        assert store.get(first.id) is None and store.get(second.id) is second
        assert store.get(third.id) is third
        await store.close()

    asyncio.run(scenario())
