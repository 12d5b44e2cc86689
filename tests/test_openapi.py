"""GET /openapi.json describes the public API, and the gateway keeps to it: Schemathesis
generates requests for every operation (bounded examples), and every answer is below 500, has a
documented status and content type, and matches its schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from manxue.server.app import build_app
from manxue.settings import settings_from_dict
from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer

EXAMPLES = 12  # per operation
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LoopbackServer(DeepSeekEmulator(record=False).app()) as upstream:
        app = build_app(settings_from_dict({
            "data_dir": str(tmp_path_factory.mktemp("openapi")),
            "router": {"max_attempts": 1, "backoff_base": 0.01},
            "deployments": [{"name": "up", "model": "deepseek-chat", "kind": "openai",
                             "base_url": upstream.url}]}))
        with LoopbackServer(app) as srv:
            yield srv.url


def _served_model_only(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with every request's `model` pinned to the served one, so generated
    requests reach the upstream and answer 200 (whole and streamed), not only 404."""
    for comp in doc["components"]["schemas"].values():
        if "model" in comp.get("properties", {}):
            comp["properties"]["model"] = {"const": "deepseek-chat"}
    for item in doc["paths"].values():
        for op in item.values():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            for part in [body.get("schema", {}), *body.get("schema", {}).get("allOf", [])]:
                if "model" in part.get("properties", {}):
                    part["properties"]["model"] = {"const": "deepseek-chat"}
    return doc


@pytest.fixture(scope="module", params=["any model", "the served model"])
def api_schema(gw: str, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    doc = httpx.get(gw + "/openapi.json", timeout=10).json()
    if request.param == "the served model":
        doc = _served_model_only(doc)
    return schemathesis.openapi.from_dict(doc).exclude(path="/v1/verify", method="POST")


def test_the_document_names_every_public_route(gw: str) -> None:
    doc = httpx.get(gw + "/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    for path in ("/v1/chat/completions", "/v1/completions", "/beta/completions", "/v1/embeddings",
                 "/v1/messages", "/v1/messages/count_tokens", "/v1/responses",
                 "/v1/responses/{id}", "/v1/models", "/user/balance", "/health", "/ready"):
        assert path in doc["paths"], path
    listed = httpx.post(gw + "/v1/nowhere", timeout=10).json()["error"]["message"]
    for route in listed.split("routes: ")[1].split(", "):
        method, path = route.split(" ", 1)
        if path.startswith(("/anthropic/", "/v1/user/", "/v1/verify/{id}/")):
            continue  # the same operations under another base URL; the HTML report
        assert method.lower() in doc["paths"].get(path, {}), route


def test_every_answer_keeps_to_the_document(api_schema: schemathesis.BaseSchema, gw: str) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 17  # every one but POST /v1/verify (it would start audits)
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def keeps_to_it(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=gw, timeout=20, checks=CHECKS)

        keeps_to_it()
