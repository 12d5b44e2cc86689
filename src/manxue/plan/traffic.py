"""A traffic profile: tokens per hour over a day or a week, read from CSV.

    time,input_tokens,output_tokens[,cache_hit_tokens]
    2026-09-07T00:00:00Z,120000000,30000000,60000000
or, with hour offsets from a start time (`--start`):
    hour,input_tokens,output_tokens
    0,120000000,30000000

Each row is one hour. Without cache_hit_tokens, `hit_rate` × input are cache hits.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from manxue.errors import InvalidParameters
from manxue.pricing import TokenCounts
from manxue.timeutil import require_zone


@dataclass(frozen=True, slots=True)
class HourTraffic:
    when: datetime
    usage: TokenCounts


def _int(row: dict[str, str], key: str, line: int) -> int:
    try:
        value = int(float(row[key]))
    except (KeyError, TypeError, ValueError):
        raise InvalidParameters(f"traffic line {line}: {key} must be a number") from None
    if value < 0:
        raise InvalidParameters(f"traffic line {line}: {key} must be >= 0")
    return value


def parse_traffic(lines: list[str], start: datetime | None, hit_rate: float) -> list[HourTraffic]:
    if not 0 <= hit_rate <= 1:
        raise InvalidParameters("hit rate must be in [0, 1]", param="hit_rate")
    reader = csv.DictReader(lines)
    fields = set(reader.fieldnames or ())
    if not {"input_tokens", "output_tokens"} <= fields or not fields & {"time", "hour"}:
        raise InvalidParameters("traffic CSV needs columns time (or hour), input_tokens, output_tokens")
    if "time" not in fields and start is None:
        raise InvalidParameters("traffic CSV with an hour column needs a start time")
    base = require_zone(start, "start") if start is not None else None
    hours: list[HourTraffic] = []
    for line, row in enumerate(reader, start=2):
        if "time" in fields:
            try:
                when = require_zone(datetime.fromisoformat(row["time"].strip()), f"line {line} time")
            except ValueError:
                raise InvalidParameters(f"traffic line {line}: time is not ISO 8601") from None
        elif base is not None:
            when = base + timedelta(hours=_int(row, "hour", line))
        inp, out = _int(row, "input_tokens", line), _int(row, "output_tokens", line)
        hit = _int(row, "cache_hit_tokens", line) if row.get("cache_hit_tokens") else round(inp * hit_rate)
        if hit > inp:
            raise InvalidParameters(f"traffic line {line}: cache_hit_tokens > input_tokens")
        hours.append(HourTraffic(when, TokenCounts(hit, inp - hit, out)))
    if not hours:
        raise InvalidParameters("traffic CSV has no rows")
    return hours


def read_traffic(path: Path, start: datetime | None, hit_rate: float) -> list[HourTraffic]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidParameters(f"cannot read traffic file {path}: {exc.strerror or exc}") from None
    return parse_traffic(text.splitlines(), start, hit_rate)
