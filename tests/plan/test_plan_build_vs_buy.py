"""Build vs buy on a synthetic day: cloud, self-host for the peak, hybrids."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from manxue.errors import InvalidParameters
from manxue.plan.build_vs_buy import compare, default_start, need_units
from manxue.plan.capacity import Capacity, Deployment, plan_capacity
from manxue.plan.catalog import builtin_catalog
from manxue.plan.traffic import parse_traffic
from manxue.pricing import get_price_list

D = Decimal


def profile(peak: int = 20, trough: int = 1) -> list[str]:
    """24 hours, 20× swing: busy 09:00–18:00 UTC."""
    rows = ["hour,input_tokens,output_tokens"]
    for h in range(24):
        scale = peak if 9 <= h < 18 else trough
        rows.append(f"{h},{scale * 100_000_000},{scale * 25_000_000}")
    return rows


@pytest.fixture(scope="module")
def cap() -> Capacity:
    c = builtin_catalog()
    return plan_capacity(Deployment(c.model("deepseek-r1"), c.device("h800"), 16, "fp8",
                                    efficiency=0.2))


def test_three_options_and_utilisation(cap: Capacity) -> None:
    start = datetime.fromisoformat("2025-03-03T00:00:00Z")
    hours = parse_traffic(profile(), start, hit_rate=0.5)
    plist = get_price_list("deepseek-r1-2025-02")
    out = compare(hours, cap, D(2), plist, "deepseek-reasoner", (50, 90))
    names = [o["name"] for o in out["options"]]
    assert names == ["cloud", "self-host-peak", "hybrid-p50", "hybrid-p90"]
    by = {o["name"]: o for o in out["options"]}
    peak_units = by["self-host-peak"]["units"]
    assert peak_units >= 1 and by["self-host-peak"]["cloud_usd"] == 0
    assert by["self-host-peak"]["utilisation"] < 0.5          # sized for a 20× peak
    assert by["hybrid-p50"]["units"] <= peak_units
    assert by["hybrid-p50"]["cloud_token_share"] > 0
    assert by["cloud"]["units"] == 0 and by["cloud"]["cloud_token_share"] == 1.0
    assert out["cheapest"] in names
    assert out["need_units"]["peak_to_trough"] == pytest.approx(20, rel=1e-6)


def test_cloud_cost_honours_time_of_day_prices(cap: Capacity) -> None:
    plist = get_price_list("deepseek-r1-2025-02")
    flat = ["time,input_tokens,output_tokens,cache_hit_tokens",
            "2025-03-03T12:00:00Z,1000000,1000000,0"]
    night = ["time,input_tokens,output_tokens,cache_hit_tokens",
             "2025-03-03T20:00:00Z,1000000,1000000,0"]
    day_cost = compare(parse_traffic(flat, None, 0), cap, D(2), plist, "deepseek-reasoner")
    night_cost = compare(parse_traffic(night, None, 0), cap, D(2), plist, "deepseek-reasoner")
    # one hour scaled to a 730-hour month: (0.55 + 2.19) × 730 vs (0.135 + 0.55) × 730
    assert day_cost["options"][0]["monthly_usd"] == D("2000.2")
    assert night_cost["options"][0]["monthly_usd"] == D("500.05")


def test_need_units_is_work_over_capacity(cap: Capacity) -> None:
    hours = parse_traffic(["hour,input_tokens,output_tokens", "0,0,3600"],
                          datetime.fromisoformat("2025-03-03T00:00:00Z"), 0)
    assert need_units(hours[0], cap) == pytest.approx(1 / cap.decode_tokens_per_s)


def test_default_start_is_a_monday_inside_the_list() -> None:
    plist = get_price_list("deepseek-r1-2025-02")
    start = default_start(plist, "deepseek-reasoner", datetime.fromisoformat("2026-11-20T10:00:00Z"))
    assert start == datetime.fromisoformat("2025-03-03T00:00:00Z")
    now = datetime.fromisoformat("2025-03-06T10:00:00Z")
    assert default_start(plist, "deepseek-reasoner", now) == datetime.fromisoformat(
        "2025-03-03T00:00:00Z")


@pytest.mark.parametrize(("rows", "message"), [
    (["a,b"], "columns"),
    (["hour,input_tokens,output_tokens"], "no rows"),
    (["hour,input_tokens,output_tokens", "0,x,1"], "input_tokens must be a number"),
    (["time,input_tokens,output_tokens", "2025-03-03T00:00:00,1,1"], "no time zone"),
    (["time,input_tokens,output_tokens,cache_hit_tokens", "2025-03-03T00:00:00Z,1,1,5"], "> input"),
])
def test_bad_traffic_files(rows: list[str], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        parse_traffic(rows, datetime.fromisoformat("2025-03-03T00:00:00Z"), 0.5)
