"""Aggregate versions in Redis: the optimistic-concurrency decision of the event store.

Keys (per tenant; type and id percent-encoded by cluster.naming.aggregate_key):

    esb:tenant:<t>:agg:<type>:<id>            hash: version (highest confirmed), stream (the
                                              stream the aggregate lives in), pending (JSON of an
                                              open reservation: token, from, to, ids, expires_ms)
    esb:tenant:<t>:agg:<type>:<id>:log        hash version -> event id
    esb:tenant:<t>:agg:<type>:<id>:ids        hash event id -> version (idempotent retries)
    esb:tenant:<t>:agg:<type>:<id>:snapshot   an SDK snapshot {"version", "state"} (a cache)

Three Lua scripts, each atomic in Redis:

RESERVE(expected, k ids) -> ('dup', v, versions...) every id already has a version: the same
    answer again; ('busy', v) another reservation is open; ('stale', v, pending) one expired;
    ('conflict', v) the expectation fails; ('stream', v, s) the aggregate lives in stream s;
    ('ok', v) this caller holds versions v+1..v+k under its token.
CONFIRM(token, landed) -> records the first `landed` ids at versions from..from+landed-1,
    raises `version`, and closes the reservation (only the token's holder, or the recovery that
    took an expired one over, can).
OBSERVE(version, id) -> the indexer's view of a record carrying `esbversion`: accepted when it
    is version+1 (or already known), refused when it would leave a gap. A rebuild restores every
    aggregate this way from the topics alone.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from cluster import naming

RESERVE = """
local head, ids = KEYS[1], KEYS[2]
local expected, stream, token = ARGV[1], ARGV[2], ARGV[3]
local now, lease, k = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local want = {}
for i = 1, k do want[i] = ARGV[6 + i] end
local version = tonumber(redis.call('HGET', head, 'version') or '0')
local known = redis.call('HMGET', ids, unpack(want))
local found = 0
for i = 1, k do if known[i] then found = found + 1 end end
if found == k then
  local out = {'dup', version}
  for i = 1, k do out[2 + i] = known[i] end
  return out
end
if found > 0 then return {'partial', version} end
local pending = redis.call('HGET', head, 'pending')
if pending then
  if cjson.decode(pending)['expires_ms'] > now then return {'busy', version} end
  return {'stale', version, pending}
end
local home = redis.call('HGET', head, 'stream')
if home and home ~= stream then return {'stream', version, home} end
local ok = expected == 'any' or (expected == 'no_stream' and version == 0)
  or (expected == 'exists' and version > 0) or tostring(version) == expected
if not ok then return {'conflict', version} end
local hold = {token = token, from = version + 1, to = version + k, ids = want,
              expires_ms = now + lease}
redis.call('HSET', head, 'pending', cjson.encode(hold), 'stream', stream)
return {'ok', version}
"""

CONFIRM = """
local head, log, ids = KEYS[1], KEYS[2], KEYS[3]
local pending = redis.call('HGET', head, 'pending')
if not pending then return -1 end
local hold = cjson.decode(pending)
if hold['token'] ~= ARGV[1] then return -1 end
local landed = tonumber(ARGV[2])
for i = 1, landed do
  local v = hold['from'] + i - 1
  redis.call('HSET', log, v, hold['ids'][i])
  redis.call('HSET', ids, hold['ids'][i], v)
end
local version = tonumber(redis.call('HGET', head, 'version') or '0')
local top = hold['from'] + landed - 1
if top > version then redis.call('HSET', head, 'version', top) end
redis.call('HDEL', head, 'pending')
return math.max(top, version)
"""

OBSERVE = """
local head, log, ids = KEYS[1], KEYS[2], KEYS[3]
local v, id, stream = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local version = tonumber(redis.call('HGET', head, 'version') or '0')
if v > version + 1 then return -1 end
local at = redis.call('HGET', log, v)
if at and at ~= id then return -2 end
redis.call('HSET', log, v, id)
redis.call('HSET', ids, id, v)
if v == version + 1 then redis.call('HSET', head, 'version', v) end
redis.call('HSETNX', head, 'stream', stream)
return v
"""


def keys(tenant_id: str, aggregate_type: str, aggregate_id: str) -> list[str]:
    """head, log, ids: the KEYS of the scripts."""
    return [
        naming.aggregate_key(tenant_id, aggregate_type, aggregate_id),
        naming.aggregate_key(tenant_id, aggregate_type, aggregate_id, "log"),
        naming.aggregate_key(tenant_id, aggregate_type, aggregate_id, "ids"),
    ]


def snapshot_key(tenant_id: str, aggregate_type: str, aggregate_id: str) -> str:
    return naming.aggregate_key(tenant_id, aggregate_type, aggregate_id, "snapshot")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AggregateStore:
    """The scripts on an asyncio Redis client; the indexer registers OBSERVE on its own."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(RESERVE)
        self._confirm = redis.register_script(CONFIRM)

    async def reserve(
        self,
        agg: list[str],
        expected: str,
        stream_id: str,
        token: str,
        now_ms: int,
        lease_ms: int,
        event_ids: list[str],
    ) -> list[str]:
        args: list[str | int] = [expected, stream_id, token, now_ms, lease_ms, len(event_ids)]
        args.extend(event_ids)
        answer = await self._reserve(keys=[agg[0], agg[2]], args=args)  # head, ids
        return [_text(x) for x in answer]

    async def confirm_on(self, pipe: Any, agg: list[str], token: str, landed: int) -> None:
        """Queue CONFIRM on a pipeline (so it lands with the index writes, in one round trip)."""
        await self._confirm(keys=agg, args=[token, landed], client=pipe)

    async def confirm(self, agg: list[str], token: str, landed: int) -> int:
        return int(await self._confirm(keys=agg, args=[token, landed]))

    async def head(self, agg: list[str]) -> tuple[int, str | None]:
        """(confirmed version, the stream the aggregate lives in: None before its first)."""
        version, stream = await self._redis.hmget(agg[0], ["version", "stream"])
        return int(version or 0), _text(stream) if stream else None

    async def event_ids(self, agg: list[str], versions: list[int]) -> list[str | None]:
        found = await self._redis.hmget(agg[1], [str(v) for v in versions]) if versions else []
        return [_text(x) if x is not None else None for x in found]

    async def landed(self, agg: list[str], event_ids: list[str]) -> int:
        """How many of `event_ids`, from the first, have a version (a prefix: OBSERVE)."""
        found = await self._redis.hmget(agg[2], event_ids)
        count = 0
        for item in found:
            if item is None:
                break
            count += 1
        return count
