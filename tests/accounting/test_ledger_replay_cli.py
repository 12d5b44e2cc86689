"""`manxue ledger replay DIR`: a dead replica's journal, replayed from another machine into the
shared PostgreSQL ledger, each row once, however many times it is run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from manxue.store.db import open_engine
from manxue.store.tables import ledger


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "manxue", "ledger", "replay", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_killed_replicas_journal_is_replayed_once(tmp_path: Path, postgres_url: str) -> None:
    journal = tmp_path / "dead-replica" / "journal"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from manxue.accounting.journal import Journal
        from manxue.accounting.ledger import LEDGER_COLUMNS
        from tests.accounting.test_journal import row
        j = Journal(Path({str(journal)!r}), LEDGER_COLUMNS, segment_bytes=8192)
        for i in range(120):
            j.append(row(i))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    cfg = tmp_path / "prod.toml"
    cfg.write_text(f'database_url = "{postgres_url}"\ndata_dir = "{tmp_path / "here"}"\n')

    # the replica's data directory is taken for its journal
    kept = _run(str(journal.parent), "--config", str(cfg), "--keep")
    assert kept.returncode == 0, kept.stderr
    assert "120 row(s), 120 new in the ledger, 0 already there" in kept.stdout
    again = _run(str(journal), "--config", str(cfg))  # the same rows: nothing counted twice
    assert again.returncode == 0, again.stderr
    assert "120 row(s), 0 new in the ledger, 120 already there" in again.stdout
    assert not list(journal.glob("segment-*.jsonl"))  # replayed segments are removed
    engine = open_engine(postgres_url)
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ledger)).scalar() == 120
    engine.dispose()
    empty = _run(str(journal), "--config", str(cfg))
    assert "replayed 0 segment(s)" in empty.stdout
    missing = _run(str(tmp_path / "nowhere"), "--config", str(cfg))
    assert missing.returncode == 2
