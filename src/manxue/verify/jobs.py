"""Audits run as jobs inside the gateway process: bounded, in memory, oldest evicted first.

A job belongs to its owner (the tenant of the key that started it, else the key; None when
no key is needed): `get(id, owner)` finds only the owner's jobs. Running jobs are capped per
owner (`per_owner_limit`) and in all (`running_limit`); past either, `start` raises
RateLimited (429 with Retry-After)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from manxue.errors import ManxueError, RateLimited
from manxue.verify.audit import Progress, run_audit
from manxue.verify.config import AuditConfig

log = logging.getLogger("manxue.verify")
_ERROR_CHARS = 1000


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
    owner: str | None = None
    """Who may see it: a tenant id or key id; None for jobs started without a key."""

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        """The job as GET /v1/verify/{id} shows it. `spent` of `budget`: requests sent to the
        audited endpoint so far, of those the audit may send; `reference_spent`; `current`: the
        check running; `evidence`: one line on what the audit has seen so far. An audit whose
        endpoint could not be used ends `done` with the verdict "error" in `result`; `error`
        here is for a job that could not run at all (`failed`)."""
        return {"id": self.id, "object": "verify.job", "status": self.status,
                "created_at": datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds"),
                "settings": self.config.public(), **self.progress.totals(),
                "progress": self.progress.to_list(), "result": self.result, "error": self.error}


class JobStore:
    """The jobs of one gateway: at most `limit` kept, `running_limit` running at once, of
    which at most `per_owner_limit` for any one owner (None: no cap per owner)."""

    retry_after = 10.0
    """Seconds a refused caller is told to wait (Retry-After)."""

    def __init__(self, limit: int = 32, running_limit: int = 4,
                 per_owner_limit: int | None = None) -> None:
        self.limit = limit
        self.running_limit = running_limit
        self.per_owner_limit = per_owner_limit
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, if `owner` owns it (someone else's job is as absent as an unknown one)."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def running(self) -> int:
        """Jobs not finished, everyone's."""
        return sum(1 for j in self._jobs.values() if not j.finished)

    def running_for(self, owner: str | None) -> int:
        """Jobs of `owner` not finished."""
        return sum(1 for j in self._jobs.values() if not j.finished and j.owner == owner)

    def admit(self, owner: str | None) -> None:
        """Raise RateLimited when `owner` (or the gateway) has no free slot for a job."""
        per_owner = self.per_owner_limit
        if per_owner is not None and self.running_for(owner) >= per_owner:
            raise RateLimited(f"you already have {per_owner} audit(s) running here "
                              "(the limit per tenant, [verify] max_running_per_tenant); retry "
                              "when one has finished", code="verify_jobs_per_tenant",
                              retry_after=self.retry_after)
        if self.running() >= self.running_limit:
            raise RateLimited(f"{self.running_limit} audits are already running here "
                              "([verify] max_running); retry when one has finished",
                              code="verify_jobs_busy", retry_after=self.retry_after)

    def start(self, config: AuditConfig, owner: str | None = None) -> Job:
        """Start an audit for `owner` (raises RateLimited past the running caps)."""
        self.admit(owner)
        while len(self._jobs) >= self.limit:
            self._evict()
        job = Job("vrf-" + secrets.token_hex(8), config, owner=owner)
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
        except ManxueError as exc:  # e.g. the network policy refused a target mid-audit
            log.warning("verify job %s stopped: %s", job.id, exc.message)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc.message}"[:_ERROR_CHARS]
        except Exception as exc:  # the job reports it; the gateway keeps serving
            log.exception("verify job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]

    async def close(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
