"""Pipeline state in Redis: fenced checkpoints, window results, progress, dead letters.

Why Redis holds the offsets: a checkpoint (window results + operator snapshot + next offset +
counters) is written by ONE Lua script, so outputs and the position that produced them are durable
together or not at all. Nothing is counted twice after a restart, and nothing is lost.

Fencing: every partition has an epoch, `esb:pl:<id>:epoch:<p>`. An owner takes partitions with
`claim` (INCR: its epoch is the new value) and every commit checks that each epoch it holds is
still the current one; a paused, restarted or cut-off owner whose partitions were taken over gets
`Fenced` and writes nothing. Kafka consumer-group offsets are not used.

Keys (prefix `esb:pl:<id>`):
    :epoch:<p>   int         fencing epoch of partition p
    :ckpt:<p>    hash        offset, epoch, state (operator snapshot bytes)
    :res         hash        member -> result JSON (idempotent overwrite); the member is
                             "<key>|<start>|<end>" for a window, "<left id>|<right id>" for a
                             join pair ("" for an unmatched left), "<pattern>|<key>|<digest of
                             the matched ids>" for a pattern match
    :by-end      zset        result member by end (window_end_ms, the later of a pair's times,
                             a match's end_ms): time range, latest N
    :by-key:<k>  zset        result member by start (window_start_ms, the left time, start_ms)
    :patterns    string      JSON {"version": n, "patterns": [...]}: the pattern set owners run
                             (absent until the first change: version 1 is the submitted spec's)
    :owners      hash        owner (its partitions, "0-2-4") -> pattern version it runs
    :job         hash        owner_restarts, owner_moves (the job's coordinator counts them)
    :placement   string      JSON [{owner, partitions, node_id, node_address}]: where owners run
    :progress:<p> hash       counters and the committed offset
    :dead        list        late events under late_policy "dead_letter" (JSON)
    Session windows that a merge replaced are deleted in the same script.
    :live        channel     each commit's results as a JSON array, for WebSocket clients
    :outbox:<partitions>  what an owner still has to publish to the output topic (see below)

Output topics (exactly once): a commit also stores the step's output records as an outbox; the
owner then publishes them in one Kafka transaction together with the step's source offsets
(send_offsets_to_transaction to the pipeline's group) and clears the outbox. A restarted owner
finds a leftover outbox and publishes it, unless the group's committed offsets show that its
transaction already committed. Zombies are fenced by the transactional id (one per partition
set) on the Kafka side and by the epochs on the Redis side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from redis import Redis

from cluster import naming
from cluster.errors import Fenced

_COMMIT = """
local prefix = ARGV[1]
local epochs = cjson.decode(ARGV[2])
for p, e in pairs(epochs) do
  local current = redis.call('GET', prefix .. ':epoch:' .. p)
  if current ~= tostring(e) then
    return {0, p, current or ''}
  end
end
for _, r in ipairs(cjson.decode(ARGV[6])) do
  redis.call('HDEL', prefix .. ':res', r[1])
  redis.call('ZREM', prefix .. ':by-end', r[1])
  redis.call('ZREM', prefix .. ':by-key:' .. r[2], r[1])
end
local results = cjson.decode(ARGV[3])
for _, r in ipairs(results) do
  local member, key, start_ms, end_ms, doc = r[1], r[2], r[3], r[4], r[5]
  redis.call('HSET', prefix .. ':res', member, doc)
  redis.call('ZADD', prefix .. ':by-end', end_ms, member)
  redis.call('ZADD', prefix .. ':by-key:' .. key, start_ms, member)
end
local progress = cjson.decode(ARGV[4])
for p, counters in pairs(progress) do
  for field, n in pairs(counters) do
    redis.call('HINCRBY', prefix .. ':progress:' .. p, field, n)
  end
end
local dead = cjson.decode(ARGV[5])
for _, d in ipairs(dead) do
  redis.call('RPUSH', prefix .. ':dead', d)
end
if ARGV[8] ~= '' then
  redis.call('SET', prefix .. ':outbox:' .. ARGV[9], ARGV[8])
end
local i = 10
while i <= #ARGV do
  local p, offset, state = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', prefix .. ':ckpt:' .. p, 'offset', offset, 'epoch', epochs[p], 'state', state)
  redis.call('HSET', prefix .. ':progress:' .. p, 'offset', offset)
  i = i + 3
end
if #results > 0 then
  redis.call('PUBLISH', prefix .. ':live', ARGV[7])
end
return {1}
"""


@dataclass(frozen=True)
class Checkpoint:
    offset: int | None  # next offset to read; None: start from the beginning
    state: bytes | None


@dataclass
class Commit:
    """What one owner makes durable in one step."""

    results: list[dict[str, Any]]
    positions: dict[int, tuple[int, bytes]]  # partition -> (next offset, operator snapshot)
    progress: dict[int, dict[str, int]]
    dead_letters: list[dict[str, Any]]
    retracted: list[dict[str, Any]]  # session windows a merge replaced: deleted first
    outbox: bytes = b""  # for an output topic: what the owner publishes after this commit
    store_results: bool = True  # False when the spec's sinks leave Redis out

    @cached_property
    def documents(self) -> list[tuple[str, bytes]]:
        """(member, JSON) of each result, encoded once for Redis, live clients and the outbox."""
        return [(result_member(doc), orjson.dumps(doc)) for doc in self.results]


def result_index(doc: dict[str, Any]) -> tuple[str, int, int]:
    """(member, start, end) of a window, join or pattern result (see the key layout above)."""
    if "window_start_ms" in doc:
        start, end = doc["window_start_ms"], doc["window_end_ms"]
        return f"{doc['key']}|{start}|{end}", start, end
    if "pattern" in doc:
        ids = orjson.dumps(doc["events"], option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(ids).hexdigest()[:16]
        return f"{doc['pattern']}|{doc['key']}|{digest}", doc["start_ms"], doc["end_ms"]
    right = doc["right_event_id"]
    times = [t for t in (doc["left_time_ms"], doc["right_time_ms"]) if t is not None]
    return f"{doc['left_event_id']}|{right or ''}", doc["left_time_ms"], max(times)


def result_member(doc: dict[str, Any]) -> str:
    return result_index(doc)[0]


def pattern_set(raw: bytes | str) -> tuple[int, list[dict[str, Any]]]:
    """(version, patterns) of a stored ``:patterns`` document."""
    doc = orjson.loads(raw)
    return int(doc["version"]), list(doc["patterns"])


# A pattern change: the next version, atomically (KEYS[1] = the :patterns key, ARGV[1] = JSON
# list of patterns). Answers the new version.
PUT_PATTERNS = """
local current = redis.call('GET', KEYS[1])
local version = 1
if current then version = cjson.decode(current)['version'] end
version = version + 1
redis.call('SET', KEYS[1], '{"version":' .. version .. ',"patterns":' .. ARGV[1] .. '}')
return version
"""


class PipelineStore:
    """Synchronous (it runs inside partition-owner actors, between blocking Kafka polls)."""

    def __init__(self, redis: Redis, pipeline_id: str, partitions: list[int] | None = None) -> None:
        self._redis = redis
        self._prefix = naming.pipeline_key(pipeline_id)
        self._commit = redis.register_script(_COMMIT)
        self.owner_key = "-".join(map(str, sorted(partitions or [])))

    def outbox(self) -> bytes | None:
        """What the last commit left to publish to the output topic, if it was not cleared."""
        found = self._redis.get(f"{self._prefix}:outbox:{self.owner_key}")
        return found.encode() if isinstance(found, str) else found

    def clear_outbox(self) -> None:
        self._redis.delete(f"{self._prefix}:outbox:{self.owner_key}")

    def patterns(self) -> tuple[int, list[dict[str, Any]]] | None:
        """The latest pattern set (version, patterns), or None while the spec's is current."""
        raw = self._redis.get(f"{self._prefix}:patterns")
        return None if raw is None else pattern_set(raw)

    def report_patterns_version(self, version: int) -> None:
        """Say which pattern version this owner runs (the pipeline's status shows it)."""
        self._redis.hset(f"{self._prefix}:owners", self.owner_key, version)

    def claim(self, partitions: list[int]) -> dict[int, int]:
        """Take the partitions over: a new epoch each, which fences every earlier owner."""
        pipe = self._redis.pipeline(transaction=True)
        for p in partitions:
            pipe.incr(f"{self._prefix}:epoch:{p}")
        return dict(zip(partitions, pipe.execute(), strict=True))

    def checkpoint(self, partition: int) -> Checkpoint:
        raw = self._redis.hmget(f"{self._prefix}:ckpt:{partition}", ["offset", "state"])
        offset, state = raw[0], raw[1]
        return Checkpoint(
            int(offset) if offset is not None else None,
            state.encode() if isinstance(state, str) else state,
        )

    def commit(self, epochs: dict[int, int], commit: Commit) -> None:
        stored = commit.results if commit.store_results else []
        documents = commit.documents if commit.store_results else []
        retracted = commit.retracted if commit.store_results else []
        args: list[Any] = [
            self._prefix,
            orjson.dumps({str(p): e for p, e in epochs.items()}),
            orjson.dumps(
                [
                    [member, str(d["key"]), *result_index(d)[1:], raw.decode()]
                    for d, (member, raw) in zip(stored, documents, strict=True)
                ]
            ),
            orjson.dumps({str(p): c for p, c in commit.progress.items()}),
            orjson.dumps([orjson.dumps(d).decode() for d in commit.dead_letters]),
            orjson.dumps([[result_member(r), str(r["key"])] for r in retracted]),
            b"[" + b",".join(raw for _, raw in documents) + b"]",  # what live subscribers get
            commit.outbox,
            self.owner_key,
        ]
        for p, (offset, state) in commit.positions.items():
            args += [str(p), str(offset), state]
        answer = self._commit(args=args)
        if answer[0] != 1:
            raise Fenced(
                f"partition {answer[1]!r} was taken over (epoch now {answer[2]!r}); "
                "this owner stops without writing"
            )
