"""`manxue db migrate` brings a config's database to the current schema and says where it left
it; MANXUE_DATABASE_URL / MANXUE_REDIS_URL replace the file's URLs (credentials from a secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from manxue.settings import load_settings


def _migrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manxue", "db", "migrate", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_migrate_a_fresh_sqlite_database_then_find_it_current(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'database_url = "sqlite:///{tmp_path / "gw.db"}"\n')
    first = _migrate("--config", str(cfg))
    assert first.returncode == 0, first.stderr
    assert "migrated from revision none to " in first.stdout
    again = _migrate("--config", str(cfg))
    assert again.returncode == 0 and "schema current (revision " in again.stdout


def test_migrate_postgres_named_by_the_environment(tmp_path: Path, postgres_url: str) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('database_url = "postgresql://nobody@127.0.0.1:1/not-this-one"\n')
    done = _migrate("--config", str(cfg), env={"MANXUE_DATABASE_URL": postgres_url})
    assert done.returncode == 0, done.stderr
    assert "migrated from revision none to " in done.stdout
    assert "postgresql" not in done.stdout.split(":")[0]  # credentials are not printed


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('database_url = "postgresql://nobody@127.0.0.1:1/x"\n')
    failed = _migrate("--config", str(cfg))
    assert failed.returncode == 1 and "cannot migrate the database" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_environment_replaces_the_files_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('database_url = "sqlite:///file.db"\nredis_url = "redis://file:6379/0"\n')
    monkeypatch.setenv("MANXUE_DATABASE_URL", "postgresql://secret@db/manxue")
    monkeypatch.setenv("MANXUE_REDIS_URL", "redis://:secret@cache:6379/1")
    s = load_settings(cfg)
    assert s.database_url == "postgresql://secret@db/manxue"
    assert s.redis_url == "redis://:secret@cache:6379/1"
    assert load_settings(None).database_url == "postgresql://secret@db/manxue"
    monkeypatch.delenv("MANXUE_DATABASE_URL")
    assert load_settings(cfg).database_url == "sqlite:///file.db"
