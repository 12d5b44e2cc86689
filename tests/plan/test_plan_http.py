"""GET /v1/plan through a real aiohttp server on 127.0.0.1: same JSON as the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from typer.testing import CliRunner

from manxue.errors import ManxueError
from manxue.plan.cli import plan_app
from manxue.server.middleware import error_response
from manxue.server.routes.plan import plan_handler
from manxue.testing.loopback import LoopbackServer


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ManxueError as exc:
        return error_response(exc)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = web.Application(middlewares=[_errors])
    app.router.add_get("/v1/plan", plan_handler)
    with LoopbackServer(app) as srv:
        yield srv.url


def test_same_json_as_the_cli(url: str) -> None:
    params = {"model": "deepseek-r1", "hardware": "h800", "gpus": "16", "precision": "fp8",
              "context": "8192", "gpu_hour": "2.0", "price_list": "deepseek-r1-2025-02",
              "at": "2025-03-03T12:00:00Z"}
    r = httpx.get(f"{url}/v1/plan", params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    cli = CliRunner().invoke(plan_app, [
        "--model", "deepseek-r1", "--hardware", "h800", "--gpus", "16", "--precision", "fp8",
        "--context", "8192", "--gpu-hour", "2.0", "--price-list", "deepseek-r1-2025-02",
        "--at", "2025-03-03T12:00:00Z", "--json"])
    assert r.json() == json.loads(cli.stdout)
    body = r.json()
    assert body["kv_bytes_per_token"] == 70_272 and body["max_concurrent_sequences"] == 835
    assert body["price_list"]["priced_at"].startswith("2025-03-03T12:00")


def test_defaults_and_off_peak_pricing(url: str) -> None:
    body = httpx.get(f"{url}/v1/plan", params={
        "model": "deepseek-r1", "hardware": "h200", "price_list": "deepseek-r1-2025-02",
        "at": "2025-03-03T20:00:00Z"}).json()
    assert body["gpus"] == 8 and body["context"] == 8192 and body["fits"] is True
    assert body["price_list"]["unit_prices"]["output"] == "0.55"


@pytest.mark.parametrize(("params", "status", "code", "param"), [
    ({"model": "gpt-9", "hardware": "h800"}, 404, "model_not_found", "model"),
    ({"hardware": "h800"}, 422, "invalid_parameters", "model"),
    ({"model": "deepseek-r1", "hardware": "h800", "gpus": "many"}, 422, "invalid_parameters", "gpus"),
    ({"model": "deepseek-r1", "hardware": "tpu"}, 422, "invalid_parameters", "hardware"),
    ({"model": "deepseek-r1", "hardware": "h800", "price_list": "x"}, 422, "price_list_not_found",
     "price_list"),
    ({"model": "deepseek-r1", "hardware": "h800", "colour": "red"}, 422, "invalid_parameters",
     "colour"),
    ({"model": "/etc/hosts.json", "hardware": "h800"}, 404, "model_not_found", "model"),
])
def test_errors_are_openai_error_json(url: str, params: dict[str, str], status: int, code: str,
                                      param: str) -> None:
    r = httpx.get(f"{url}/v1/plan", params=params)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param and err["message"]


@pytest.mark.parametrize(("params", "param"), [
    ({"engine": "warp-drive"}, "engine"),
    ({"user_speed": "-1"}, "user_speed"),
    ({"user_speed": "fast"}, "user_speed"),
    ({"efficiency": "0"}, "efficiency"),
])
def test_calibration_inputs_are_checked(url: str, params: dict[str, str], param: str) -> None:
    r = httpx.get(f"{url}/v1/plan", params={"model": "deepseek-r1", "hardware": "h800",
                                            "gpus": "16", **params})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == param


def test_calibrated_by_default_over_http(url: str) -> None:
    body = httpx.get(f"{url}/v1/plan", params={"model": "deepseek-r1", "hardware": "h800",
                                               "gpus": "16", "engine": "sglang",
                                               "user_speed": "20"}).json()
    t = body["throughput"]
    assert t["engine"] == "sglang" and t["per_user_speed_target"] == 20
    assert t["decode_tokens_per_s_per_sequence"]["value"] >= 20
