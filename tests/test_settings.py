"""The config file: the shipped example parses, bad values are refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from manxue.errors import ConfigError
from manxue.settings import load_settings, settings_from_dict

EXAMPLE = Path(__file__).parents[1] / "docs" / "config.example.toml"


def test_example_config_parses():
    s = load_settings(EXAMPLE)
    assert [d.name for d in s.deployments] == ["deepseek-official", "backup-vendor", "own-vllm", "edge"]
    d = s.deployments[0]
    assert d.timeouts.first_byte == 30 and d.tags == {"privacy": "cloud"}
    assert s.router.breaker.failures == 5


def test_api_key_env_and_secret_repr(monkeypatch):
    s = settings_from_dict({"deployments": [
        {"name": "a", "model": "m", "base_url": "http://x", "api_key": "sk-inline"},
        {"name": "b", "model": "m", "base_url": "http://x", "api_key_env": "MANXUE_T_KEY"}]})
    assert "sk-inline" not in repr(s) and "sk-inline" not in str(s.model_dump())
    assert s.deployments[0].resolved_api_key() == "sk-inline"
    monkeypatch.delenv("MANXUE_T_KEY", raising=False)
    with pytest.raises(ConfigError, match="MANXUE_T_KEY is not set"):
        s.deployments[1].resolved_api_key()
    monkeypatch.setenv("MANXUE_T_KEY", "sk-env")
    assert s.deployments[1].resolved_api_key() == "sk-env"


@pytest.mark.parametrize(("raw", "match"), [
    ({"deployments": [{"name": "a", "model": "m"}]}, "needs base_url"),
    ({"deployments": [{"name": "a", "model": "m", "base_url": "ftp://x"}]}, "http"),
    ({"deployments": [{"name": "a", "model": "m", "base_url": "http://x"},
                      {"name": "a", "model": "m", "base_url": "http://y"}]}, "used twice"),
    ({"deployments": [{"name": "a", "model": "m", "base_url": "http://x", "weight": 0}]}, "weight"),
    ({"router": {"strategy": "random-ish"}}, "strategy"),
    ({"server": {"port": 70000}}, "port"),
    ({"deployments": [{"name": "a", "model": "m", "base_url": "http://x", "colour": "red"}]}, "colour"),
])
def test_bad_config_is_refused_with_the_place(raw, match):
    with pytest.raises(ConfigError, match=match):
        settings_from_dict(raw)


def test_offline_refuses_remote_deployments():
    s = settings_from_dict({"server": {"offline": True}, "deployments": [
        {"name": "cloud", "model": "m", "base_url": "http://x"}]})
    with pytest.raises(ConfigError, match="offline mode refuses non-local deployments: cloud"):
        s.check_offline()


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
