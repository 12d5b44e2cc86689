"""Audits run as jobs inside the gateway process: bounded, in memory, oldest evicted first."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from manxue.errors import RateLimited
from manxue.verify.audit import Progress, run_audit
from manxue.verify.config import AuditConfig

log = logging.getLogger("manxue.verify")


@dataclass
class Job:
    id: str
    config: AuditConfig
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued | running | done | failed
    progress: Progress = field(default_factory=Progress)
    result: dict[str, Any] | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "verify.job", "status": self.status,
                "created_at": datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds"),
                "settings": self.config.public(), "progress": self.progress.to_list(),
                "result": self.result, "error": self.error}


class JobStore:
    def __init__(self, limit: int = 32, running_limit: int = 4) -> None:
        self.limit = limit
        self.running_limit = running_limit
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.finished)

    def start(self, config: AuditConfig) -> Job:
        if self.running() >= self.running_limit:
            raise RateLimited(f"{self.running_limit} audits are already running here; retry "
                              "when one has finished", retry_after=10)
        while len(self._jobs) >= self.limit:
            self._evict()
        job = Job("vrf-" + secrets.token_hex(8), config)
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job))
        return job

    def _evict(self) -> None:
        oldest = next((j for j in self._jobs.values() if j.finished), None) \
            or next(iter(self._jobs.values()))
        if oldest.task is not None and not oldest.task.done():
            oldest.task.cancel()
        del self._jobs[oldest.id]

    async def _run(self, job: Job) -> None:
        job.status = "running"
        try:
            job.result = await run_audit(job.config, job.progress)
            job.status = "done"
        except asyncio.CancelledError:
            job.status, job.error = "failed", "cancelled"
            raise
        except Exception as exc:  # the job reports it; the gateway keeps serving
            log.exception("verify job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
