"""Bad input gets a clear 4xx in OpenAI's error shape, never a 500."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re

import httpx
import openai
import pytest

import manxue
from manxue import errors
from manxue.testing.deepseek_emulator import Behavior
from tests.helpers import deployment

MSG = [{"role": "user", "content": "hi"}]


def _post(gw, content: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", content=content,
                      headers={"Content-Type": "application/json", **headers})


def _check(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"}
    assert err["message"]
    if code:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "invalid_json"),
    (b"", 400, "invalid_request"),
    (b"[1, 2]", 400, "invalid_request"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "invalid_request"),
    (b'{"model": "deepseek-chat"}', 400, "invalid_request"),
    (b'{"model": "deepseek-chat", "messages": []}', 400, "invalid_request"),
    (b'{"model": "deepseek-chat", "messages": "hi"}', 422, "invalid_parameters"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "wizard", "content": "x"}]}', 422,
     "invalid_parameters"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"temperature": "hot"}', 422, "invalid_parameters"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"temperature": 3}', 422, "invalid_parameters"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"max_tokens": 0}', 422, "invalid_parameters"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"stream": "yes please"}', 422, "invalid_parameters"),
    (b'{"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "x"}]}', 404,
     "model_not_found"),
])
def test_bad_requests(gateway, upstream, body, status, code):
    _check(_post(gateway, body), status, code)
    assert upstream.emu.received == []


def test_oversize_body(make_gateway, upstream):
    gw = make_gateway([deployment(upstream, "a")], server={"max_body_bytes": 2048})
    big = '{"model": "deepseek-chat", "messages": [{"role": "user", "content": "' + "x" * 5000 + '"}]}'
    err = _check(_post(gw, big), 413, "request_too_large")
    assert "2048" in err["message"]


def test_unknown_route_and_method(gateway):
    _check(httpx.get(gateway.url + "/v1/nothing-here"), 404)
    _check(httpx.get(gateway.url + "/v1/chat/completions"), 405)
    _check(httpx.get(gateway.url + "/v1/models/nope"), 404, "model_not_found")


def test_sdk_maps_errors_to_its_exception_classes(gateway):
    c = gateway.client()
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="nope", messages=MSG)
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="deepseek-chat", messages=[])
    with pytest.raises(openai.UnprocessableEntityError):
        c.chat.completions.create(model="deepseek-chat", messages=MSG, temperature=9)


def test_upstream_client_error_passes_through_untouched(gateway, upstream):
    upstream.emu.push(Behavior(status=400, error_message="Invalid max_tokens value"))
    with pytest.raises(openai.BadRequestError) as ei:
        gateway.client().chat.completions.create(model="deepseek-chat", messages=MSG)
    assert "Invalid max_tokens value" in str(ei.value)
    assert len(upstream.emu.received) == 1  # not retried


def test_secrets_never_leak(make_gateway, upstreams, caplog, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-super-secret-42")
    up = upstreams[0]
    up.emu.api_key = "sk-other-key"  # the upstream rejects our key
    gw = make_gateway([deployment(up, "a", api_key_env="UPSTREAM_KEY"),
                       deployment(upstreams[1], "b", api_key="sk-inline-secret", priority=1)])
    upstreams[1].emu.api_key = "sk-wrong"
    caplog.set_level(logging.DEBUG)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "deepseek-chat", "messages": MSG})
    assert r.status_code == 503
    assert up.emu.received[0].headers["Authorization"] == "Bearer sk-super-secret-42"
    assert len(up.emu.received) == 1  # a rejected key is not retried on the same deployment
    for text in (r.text, caplog.text, httpx.get(gw.url + "/metrics").text,
                 httpx.get(gw.url + "/ready").text):
        assert "sk-super-secret-42" not in text and "sk-inline-secret" not in text


# Modules that only run under their own runner: the CLI entry (`python -m manxue`) and
# alembic's migration environment (needs alembic.context set up).
_NOT_IMPORTABLE = {"manxue.__main__", "manxue.store.migrations.env"}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(manxue.__path__, "manxue."):
        if info.name in _NOT_IMPORTABLE:
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_the_drawn_tree_lists_every_exception_class() -> None:
    """Like httpx's: every exception class of the package is in errors.py's docstring, and one
    defined elsewhere names its module on its line."""
    tree = errors.__doc__ or ""
    classes = _exception_classes()
    assert "manxue.errors.ManxueError" in classes and len(classes) > 20
    missing = []
    for qualified, cls in sorted(classes.items()):
        lines = [line for line in tree.splitlines() if re.search(rf"\b{cls.__name__}\b", line)]
        if not lines or (cls.__module__ != "manxue.errors"
                         and not any(cls.__module__ in line for line in lines)):
            missing.append(qualified)
    assert missing == [], f"add these to the tree in errors.py's docstring: {missing}"


def test_not_found_is_one_404_with_specific_codes() -> None:
    expected = {errors.NotFound: "not_found", errors.ModelNotFound: "model_not_found",
                errors.RouteNotFound: "not_found", errors.DeploymentNotFound: "deployment_not_found",
                errors.KeyNotFound: "key_not_found", errors.TenantNotFound: "tenant_not_found",
                errors.ActionNotFound: "not_found", errors.AssetNotFound: "not_found",
                errors.RequestNotFound: "request_not_found",
                errors.JobNotFound: "verify_job_not_found",
                errors.ResponseNotFound: "response_not_found"}
    subclasses = {c for c in _exception_classes().values() if issubclass(c, errors.NotFound)}
    assert subclasses == set(expected)
    for cls, code in expected.items():
        err = cls("x").to_dict()["error"]
        assert (cls.status, err["type"], err["code"]) == (404, "invalid_request_error", code)
    assert errors.PolicyViolation("x").to_dict()["error"]["code"] == "privacy_local_unavailable"
