"""Deployments added while serving, in SQL, so that every worker and replica on the same
database serves the same set (manxue.server.deployment_sync applies them).

A row holds the deployment's settings as JSON exactly as the admin API validated them, its
upstream key included when one was given inline (prefer `api_key_env`, read by each replica
from its own environment). Synchronous: call from a thread when serving.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update

from manxue.store.tables import deployments


class DeploymentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, name: str, settings_json: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as c:
            changed = c.execute(update(deployments).where(deployments.c.name == name)
                                .values(settings=settings_json, updated_at=now)).rowcount
            if not changed:
                c.execute(insert(deployments).values(name=name, settings=settings_json,
                                                     updated_at=now))

    def delete(self, name: str) -> bool:
        with self.engine.begin() as c:
            return bool(c.execute(delete(deployments).where(deployments.c.name == name)).rowcount)

    def all(self) -> dict[str, str]:
        """name -> settings JSON."""
        with self.engine.connect() as c:
            return {str(n): str(s) for n, s in c.execute(
                select(deployments.c.name, deployments.c.settings))}
