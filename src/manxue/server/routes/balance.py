"""GET /user/balance: the calling key's balance in DeepSeek's shape, so that clients written for
DeepSeek's API (balance widgets, budget checks in scripts) show it unchanged.

    {"is_available": true,
     "balance_infos": [{"currency": "CNY", "total_balance": "8.52",
                        "granted_balance": "0.00", "topped_up_balance": "8.52"}]}

A prepaid key reports its credits less what it has spent (settled and reserved answers in
flight are not subtracted until they settle); a postpaid key reports no balance and is
available while it is active. The key is the one of the request: nobody reads another's.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import orjson
from aiohttp import web

from manxue.accounting.money import from_nano
from manxue.server.routes.chat import authenticate
from manxue.server.state import state_of

_CENT = Decimal("0.01")


def _amount(nano: int) -> str:
    return str(from_nano(nano).quantize(_CENT, rounding=ROUND_DOWN))


async def user_balance(request: web.Request) -> web.Response:
    st = state_of(request)
    key = authenticate(request, st)
    body: dict[str, object] = {"is_available": True, "balance_infos": []}
    if key is not None and st.meter is not None and key.prepaid:
        left = key.credits_nano - await st.meter.counters.spent(key.id)
        body = {"is_available": left > 0,
                "balance_infos": [{"currency": key.currency, "total_balance": _amount(left),
                                   "granted_balance": "0.00",
                                   "topped_up_balance": _amount(left)}]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    for path in ("/user/balance", "/v1/user/balance"):
        app.router.add_get(path, user_balance)
