"""Where wrapped (master-key-encrypted) tenant data keys live: a small pluggable store.

Records are opaque bytes; the store never sees a plaintext key. `add` must be atomic
create-if-absent: two API replicas minting a tenant's first key must not overwrite each
other (that would make one replica's ciphertexts unreadable).

>>> store = InMemoryKeyStore()
>>> store.add("acme", 1, b"wrapped"), store.add("acme", 1, b"other")
(True, False)
>>> store.get("acme", 1), store.versions("acme"), store.tenants()
(b'wrapped', [1], ['acme'])
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from cluster import naming

if TYPE_CHECKING:
    import redis

__all__ = ["InMemoryKeyStore", "RedisKeyStore", "WrappedKeyStore"]


class WrappedKeyStore(Protocol):
    """Wrapped data keys by (tenant, version)."""

    def get(self, tenant: str, version: int) -> bytes | None: ...

    def add(self, tenant: str, version: int, record: bytes) -> bool:
        """Store only if absent; False when that version already exists."""
        ...

    def put(self, tenant: str, version: int, record: bytes) -> None:
        """Store, replacing what is there (rewrapping, tombstones)."""
        ...

    def delete(self, tenant: str, version: int) -> bool: ...

    def versions(self, tenant: str) -> list[int]:
        """The tenant's key versions, ascending."""
        ...

    def tenants(self) -> list[str]: ...


class InMemoryKeyStore:
    """For tests and single-process use: nothing survives the process."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str, version: int) -> bytes | None:
        return self._records.get((tenant, version))

    def add(self, tenant: str, version: int, record: bytes) -> bool:
        with self._lock:
            if (tenant, version) in self._records:
                return False
            self._records[(tenant, version)] = record
            return True

    def put(self, tenant: str, version: int, record: bytes) -> None:
        with self._lock:
            self._records[(tenant, version)] = record

    def delete(self, tenant: str, version: int) -> bool:
        with self._lock:
            return self._records.pop((tenant, version), None) is not None

    def versions(self, tenant: str) -> list[int]:
        return sorted(v for t, v in self._records if t == tenant)

    def tenants(self) -> list[str]:
        return sorted({t for t, _ in self._records})


# KEYS: record, the tenant's version set, the tenant set. ARGV: record, version, tenant.
_ADD = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  return 1
end
return 0
"""
# KEYS: record, version set, tenant set. ARGV: version, tenant.
_DELETE = """
local gone = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return gone
"""


class RedisKeyStore:
    """Wrapped keys in Redis at `<prefix>:tenant:<tenant>:datakey:<version>`, indexed by
    the sets `<prefix>:tenant:<tenant>:datakeys` (versions) and `<prefix>:datakeys:tenants`,
    so rotation never has to SCAN the whole keyspace. Synchronous client: key lookups are
    rare (the KeyRing caches unwrapped keys)."""

    def __init__(self, client: redis.Redis, prefix: str = naming.REDIS_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._add = client.register_script(_ADD)
        self._delete = client.register_script(_DELETE)

    def _key(self, tenant: str, version: int) -> str:
        return naming.tenant_key(tenant, "datakey", version, prefix=self._prefix)

    def _versions_key(self, tenant: str) -> str:
        return naming.tenant_key(tenant, "datakeys", prefix=self._prefix)

    @property
    def _tenants_key(self) -> str:
        return naming.datakey_tenants_key(self._prefix)

    def get(self, tenant: str, version: int) -> bytes | None:
        value = self._redis.get(self._key(tenant, version))
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def add(self, tenant: str, version: int, record: bytes) -> bool:
        keys = [self._key(tenant, version), self._versions_key(tenant), self._tenants_key]
        return bool(self._add(keys=keys, args=[record, version, tenant]))

    def put(self, tenant: str, version: int, record: bytes) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(tenant, version), record)
            pipe.sadd(self._versions_key(tenant), version)
            pipe.sadd(self._tenants_key, tenant)
            pipe.execute()

    def delete(self, tenant: str, version: int) -> bool:
        keys = [self._key(tenant, version), self._versions_key(tenant), self._tenants_key]
        return bool(self._delete(keys=keys, args=[version, tenant]))

    def versions(self, tenant: str) -> list[int]:
        members = self._redis.smembers(self._versions_key(tenant))
        return sorted(int(m) for m in members)

    def tenants(self) -> list[str]:
        members = self._redis.smembers(self._tenants_key)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
