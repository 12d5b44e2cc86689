"""The verifier scores with the gateway's own engine only for a key that may use the
reference model: a key restricted to other models cannot spend the engine through an audit."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from manxue.engine.default_model import default_model_path
from manxue.server.routes.verify import _local_weights
from manxue.verify.scorer import EngineScorer

LOCAL = {"name": "edge", "model": "smollm2", "kind": "local", "path": str(default_model_path()),
         "options": {"n_ctx": 512, "n_parallel": 1, "max_queue": 0, "n_threads": 1}}


def test_local_scoring_needs_a_key_allowed_the_reference_model(make_billing, upstream) -> None:
    from tests.helpers import deployment

    bill = make_billing([deployment(upstream, "primary"), LOCAL],
                        billing={"default_price_list": None})
    allowed = bill.create_key(name="all")["key"]
    restricted = bill.create_key(name="chat only", models=["deepseek-chat"])["key"]
    app = bill.gw.app

    def scorer(key: str):
        request = make_mocked_request("POST", "/v1/verify", app=app,
                                      headers={"Authorization": f"Bearer {key}"})
        return _local_weights(request, {"reference_model": "smollm2"})

    from tests.helpers import wait_until

    wait_until(lambda: scorer(restricted) is None and isinstance(scorer(allowed), EngineScorer),
               what="keys loaded")
    assert scorer(restricted) is None
    found = scorer(allowed)
    assert isinstance(found, EngineScorer) and "smollm2" in found.name
    assert _local_weights(make_mocked_request(
        "POST", "/v1/verify", app=app, headers={"Authorization": f"Bearer {allowed}"}),
        {"reference_model": "smollm2", "reference_url": "http://elsewhere"}) is None
