"""The checks, in the order an audit runs them. Each is `async def run(ctx) -> CheckResult`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from manxue.verify.checks import (
    capability,
    context,
    distribution,
    likelihood,
    protocol,
    tokenizer,
)
from manxue.verify.checks.base import CheckContext, CheckOptions, CheckResult

Check = Callable[[CheckContext], Awaitable[CheckResult]]

CHECKS: dict[str, Check] = {
    "tokenizer": tokenizer.run,
    "protocol": protocol.run,
    "capability": capability.run,
    "distribution": distribution.run,
    "context": context.run,
    "likelihood": likelihood.run,
}
TITLES = {"tokenizer": tokenizer.TITLE, "protocol": protocol.TITLE,
          "capability": capability.TITLE, "distribution": distribution.TITLE,
          "context": context.TITLE, "likelihood": likelihood.TITLE}
DEFAULT = ("tokenizer", "protocol", "capability", "distribution")
"""`context` is opt-in: it spends tens of thousands of tokens. With the reference's weights
to score with, the default adds `likelihood` (WITH_WEIGHTS)."""
WITH_WEIGHTS = ("tokenizer", "likelihood", "protocol", "capability", "distribution")

__all__ = ["CHECKS", "DEFAULT", "TITLES", "WITH_WEIGHTS", "Check", "CheckContext", "CheckOptions",
           "CheckResult"]
