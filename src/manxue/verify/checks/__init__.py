"""The checks, in the order an audit runs them. Each is `async def run(ctx) -> CheckResult`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from manxue.verify.checks import capability, context, distribution, protocol, tokenizer
from manxue.verify.checks.base import CheckContext, CheckOptions, CheckResult

Check = Callable[[CheckContext], Awaitable[CheckResult]]

CHECKS: dict[str, Check] = {
    "tokenizer": tokenizer.run,
    "protocol": protocol.run,
    "capability": capability.run,
    "distribution": distribution.run,
    "context": context.run,
}
TITLES = {"tokenizer": tokenizer.TITLE, "protocol": protocol.TITLE,
          "capability": capability.TITLE, "distribution": distribution.TITLE,
          "context": context.TITLE}
DEFAULT = ("tokenizer", "protocol", "capability", "distribution")
"""`context` is opt-in: it spends tens of thousands of tokens."""

__all__ = ["CHECKS", "DEFAULT", "TITLES", "Check", "CheckContext", "CheckOptions", "CheckResult"]
