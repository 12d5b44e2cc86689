"""Launch vLLM or SGLang as a supervised OpenAI-compatible server and register it in a gateway.

`commands` builds the engine's own command line (pure functions), `supervisor` runs it
(health checks, restarts with backoff, clean shutdown), `register` talks to the gateway's
admin API, and `cli` is the `manxue engine launch` command.
"""

from __future__ import annotations

from manxue.engine_launch.commands import ENGINES, EngineName, LaunchSpec, build_command
from manxue.engine_launch.supervisor import EngineFailed, Supervisor, SupervisorConfig

__all__ = [
    "ENGINES",
    "EngineFailed",
    "EngineName",
    "LaunchSpec",
    "Supervisor",
    "SupervisorConfig",
    "build_command",
]
