"""`plan build-vs-buy --from-ledger` reads the traffic profile the gateway billed;
`plan measure` times the embedded engine on the shipped model and stores the result as
calibration rows for this host."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from manxue.accounting.ledger import insert_rows
from manxue.plan.cli import plan_app
from manxue.store.db import open_engine
from tests.accounting.test_journal import as_dict, row
from tests.plan.test_plan_cli import run, runner


def _ledger(tmp_path: Path, hours: int = 48) -> Path:
    """A SQLite ledger with a day-night profile: busy 9:00–18:00 UTC, quiet otherwise."""
    db = tmp_path / "manxue.db"
    engine = open_engine(f"sqlite:///{db}")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    rows = []
    for h in range(hours):
        at = start + timedelta(hours=h, minutes=7)
        busy = 9 <= at.hour < 18
        for i in range(20 if busy else 2):
            r = as_dict(row(len(rows), at.timestamp() + i))
            r |= {"prompt_tokens": 4000, "cache_hit_tokens": 2500, "cache_miss_tokens": 1500,
                  "completion_tokens": 1000, "model": "deepseek-reasoner"}
            rows.append(r)
    rows.append(as_dict(row(len(rows), time.time() - 600)) | {"model": "other-model"})
    insert_rows(engine, rows)
    engine.dispose()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'database_url = "sqlite:///{db}"\ndata_dir = "{tmp_path}"\n')
    return cfg


def test_build_vs_buy_from_the_ledger(tmp_path: Path) -> None:
    cfg = _ledger(tmp_path)
    out = json.loads(run("build-vs-buy", "--from-ledger", "--config", str(cfg), "--days", "3",
                         "--ledger-model", "deepseek-reasoner", "-m", "deepseek-r1",
                         "--hardware", "h800", "-n", "16", "--json"))
    p = out["traffic_profile"]
    assert p["source"] == "ledger" and 47 <= p["hours"] <= 49
    assert p["cache_hit_share"] == 2500 / 4000
    assert p["peak_to_trough"] == 10.0
    assert out["hours"] == p["hours"] and out["cheapest"]
    assert out["tokens_per_month"]["cache_hit"] > 0
    text = run("build-vs-buy", "--from-ledger", "--config", str(cfg), "-m", "deepseek-r1",
               "--hardware", "h800", "-n", "16")
    assert "from the ledger" in text and "cheapest" in text


def test_from_ledger_errors_are_clear(tmp_path: Path) -> None:
    cfg = _ledger(tmp_path, hours=3)
    res = runner.invoke(plan_app, ["build-vs-buy", "--from-ledger", "--config", str(cfg),
                                   "--ledger-model", "nobody", "-m", "deepseek-r1",
                                   "--hardware", "h800", "-n", "16"])
    assert res.exit_code == 2 and "no requests for nobody" in res.output
    res = runner.invoke(plan_app, ["build-vs-buy", "-m", "deepseek-r1", "--hardware", "h800"])
    assert res.exit_code == 2 and "--traffic FILE or --from-ledger" in res.output
    res = runner.invoke(plan_app, ["build-vs-buy", "--traffic", str(cfg), "--from-ledger",
                                   "-m", "deepseek-r1", "--hardware", "h800"])
    assert res.exit_code == 2 and "not both" in res.output


def test_measure_times_the_engine_and_saves_calibration_rows(tmp_path: Path) -> None:
    saved = tmp_path / "plan-calibration.toml"
    out = json.loads(run("measure", "--batches", "1,2", "--tokens", "8", "--prompt", "64",
                         "--threads", "2", "--save", str(saved), "--json"))
    rows = {(r["phase"], r["batch"]): r for r in out["rows"]}
    assert set(rows) == {("prefill", 1), ("decode", 1), ("decode", 2)}
    for r in rows.values():
        assert r["measured_tokens_per_s"] > 0 and r["predicted_tokens_per_s"] > 0
        assert r["measured_tokens_per_s"] < r["bound_tokens_per_s"] * 1.5
    assert out["hardware"]["id"] == "this-host" and out["hardware"]["bandwidth_tbs"] > 0
    assert out["saved"] == {"file": str(saved), "rows": 3}
    text = saved.read_text()
    assert "[[hardware]]" in text and text.count("[[anchor]]") == 3
    # the stored rows are calibration rows for this host: a plan there learns from them
    from manxue.plan.calibration import calibration

    local = [r for r in calibration(local=saved) if r.anchor.hardware == "this-host"]
    assert len(local) == 3 and all(r.estimate > 0 for r in local)


def test_a_broken_local_calibration_file_is_left_out(tmp_path: Path, monkeypatch, caplog) -> None:
    bad = tmp_path / "plan-calibration.toml"
    bad.write_text('[[anchor]]\nid = "x"\nengine = "manxue"\nhardware = "nowhere"\n')
    monkeypatch.setenv("MANXUE_PLAN_CALIBRATION", str(bad))
    with caplog.at_level("WARNING", logger="manxue.plan"):
        r = json.loads(run("-m", "deepseek-r1", "--hardware", "h800", "-n", "16", "--json"))
    assert r["throughput"]["basis"] == "calibrated on published measurements"
    assert "ignoring the measured calibration rows" in caplog.text


def test_hourly_tokens_are_summed_by_postgresql_too(postgres_url: str) -> None:
    from manxue.accounting.reports import hourly_tokens

    engine = open_engine(postgres_url)
    try:
        now = time.time()
        rows = [as_dict(row(i, now - i * 1000)) for i in range(10)]
        insert_rows(engine, rows)
        got = hourly_tokens(engine, datetime.now(UTC) - timedelta(days=1),
                            datetime.now(UTC) + timedelta(hours=1))
        assert sum(v[0] for v in got.values()) == sum(r["prompt_tokens"] for r in rows)
        assert sum(v[2] for v in got.values()) == sum(r["completion_tokens"] for r in rows)
        assert all(h.minute == 0 and h.tzinfo is not None for h in got)
    finally:
        engine.dispose()


def test_an_unreachable_ledger_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('database_url = "postgresql://someone:secret@127.0.0.1:1/ledger"\n')
    res = runner.invoke(plan_app, ["build-vs-buy", "--from-ledger", "--config", str(cfg),
                                   "-m", "deepseek-r1", "--hardware", "h800", "-n", "16"])
    assert res.exit_code == 2 and "cannot read the usage ledger at 127.0.0.1:1/ledger" in res.output
    assert "secret" not in res.output and "Traceback" not in res.output
