"""Admission state shared by several gateway processes through Redis.

The same rules as `manxue.accounting.counters.LocalCounters`, each decision taken atomically
by one Lua script on the Redis server (its clock, one round trip per admission and per
settlement). Amounts are integer nano-units; Lua keeps them exact below 2^53 (9 million
currency units per key and period).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from manxue.accounting.counters import Limits, Refusal, period_keys, seconds_to_period_end

_ADMIT = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local req, reserve, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, maxc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local credits, daily, monthly = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local all = redis.call('HGETALL', KEYS[1])
local reserved, count = 0, 0
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  local amount, expiry = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))
  if expiry < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    reserved = reserved + amount
    count = count + 1
  end
end
if maxc >= 0 and count >= maxc then return {'concurrency', '1'} end
local function level(key, cap)
  local lv = redis.call('HMGET', key, 'level', 'at')
  local l, at = tonumber(lv[1]) or cap, tonumber(lv[2]) or now
  return math.min(cap, l + (now - at) * cap / 60000)
end
local rpm_level = 0
if rpm >= 0 then
  rpm_level = level(KEYS[5], rpm)
  if rpm_level < 1 then return {'rpm', tostring((1 - rpm_level) * 60 / rpm)} end
end
if tpm >= 0 then
  local l = level(KEYS[6], tpm)
  if l < 1 then return {'tpm', tostring((1 - l) * 60 / tpm)} end
end
local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
if credits >= 0 and credits - spent - reserved < reserve then return {'balance', ''} end
if daily >= 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + reserved + reserve > daily then
  return {'daily_budget', ''}
end
if monthly >= 0 and tonumber(redis.call('GET', KEYS[4]) or '0') + reserved + reserve > monthly then
  return {'monthly_budget', ''}
end
if rpm >= 0 then
  redis.call('HSET', KEYS[5], 'level', tostring(rpm_level - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[5], 120000)
end
redis.call('HSET', KEYS[1], req, string.format('%.0f|%.0f', reserve, now + ttl))
return false
"""

_SETTLE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[2])
redis.call('INCRBY', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], 259200)
redis.call('INCRBY', KEYS[4], ARGV[2])
redis.call('EXPIRE', KEYS[4], 3456000)
local tokens, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
if tpm >= 0 and tokens > 0 then
  local lv = redis.call('HMGET', KEYS[5], 'level', 'at')
  local l, at = tonumber(lv[1]) or tpm, tonumber(lv[2]) or now
  l = math.min(tpm, l + (now - at) * tpm / 60000) - tokens
  redis.call('HSET', KEYS[5], 'level', tostring(l), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[5], 120000)
end
return 1
"""

_RAISE_TO = """
for i, key in ipairs(KEYS) do
  local cur = tonumber(redis.call('GET', key) or '0')
  if cur < tonumber(ARGV[i]) then redis.call('SET', key, ARGV[i]) end
end
return 1
"""


def _n(v: int | None) -> int:
    return -1 if v is None else v


class RedisCounters:
    def __init__(self, url: str, namespace: str = "manxue") -> None:
        self.redis: Any = aioredis.from_url(url, decode_responses=True)
        self.ns = namespace
        self._admit = self.redis.register_script(_ADMIT)
        self._settle = self.redis.register_script(_SETTLE)
        self._raise_to = self.redis.register_script(_RAISE_TO)

    def _keys(self, key_id: str) -> list[str]:
        day, month = period_keys(datetime.now(UTC))
        p = f"{self.ns}:{key_id}"
        return [f"{p}:inflight", f"{p}:spent", f"{p}:d:{day}", f"{p}:m:{month}", f"{p}:rpm",
                f"{p}:tpm"]

    async def admit(self, key_id: str, req_id: str, reserve_nano: int, limits: Limits,
                    ttl: float) -> Refusal | None:
        res = await self._admit(keys=self._keys(key_id), args=[
            req_id, reserve_nano, int(ttl * 1000), _n(limits.rpm), _n(limits.tpm),
            _n(limits.max_concurrency), _n(limits.credits_nano), _n(limits.daily_budget_nano),
            _n(limits.monthly_budget_nano)])
        if not res:
            return None
        reason, after = res[0], res[1]
        if reason in ("daily_budget", "monthly_budget"):
            return Refusal(reason, seconds_to_period_end(datetime.now(UTC), reason == "monthly_budget"))
        return Refusal(reason, float(after) if after else None)

    async def settle(self, key_id: str, req_id: str, cost_nano: int, tokens: int,
                     limits: Limits) -> None:
        keys = self._keys(key_id)
        await self._settle(keys=[keys[0], keys[1], keys[2], keys[3], keys[5]],
                           args=[req_id, cost_nano, tokens, _n(limits.tpm)])

    async def load_spent(self, total: dict[str, int], day: dict[str, int],
                         month: dict[str, int]) -> None:
        """Bring Redis up to what SQL knows (never down: other processes may be ahead)."""
        for key_id, spent in total.items():
            k = self._keys(key_id)
            await self._raise_to(keys=[k[1], k[2], k[3]],
                                 args=[spent, day.get(key_id, 0), month.get(key_id, 0)])

    async def spent(self, key_id: str) -> int:
        return int(await self.redis.get(self._keys(key_id)[1]) or 0)

    async def close(self) -> None:
        await self.redis.aclose()
