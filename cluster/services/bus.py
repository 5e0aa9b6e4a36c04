"""The clients one process shares: Redis, the idempotent producer, topic admin, the registry,
and the KeyRing of encrypted streams.

Created lazily, so importing the SDK or building a service touches no network.
"""

from __future__ import annotations

import asyncio
from functools import cached_property

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis

from cluster.kafka.clients import AsyncProducer, producer_config
from cluster.kafka.topics import TopicAdmin
from cluster.models.streams import StreamRecord
from cluster.security.encryption import KeyRing
from cluster.security.event_crypto import EventCipher, keyring_from
from cluster.settings import Settings, get_settings
from cluster.stores.streams import StreamRegistry


class Bus:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._redis: Redis | None = None
        self._redis_loop = 0
        self._keys_redis: SyncRedis | None = None

    @property
    def redis(self) -> Redis:
        """One client per event loop: redis.asyncio connections cannot cross loops."""
        loop = _loop_id()
        if self._redis is None or self._redis_loop != loop:
            # A blocking pool: under a burst, requests wait for a connection instead of failing
            # with MaxConnectionsError (a 500) once the default pool is exhausted.
            pool = BlockingConnectionPool.from_url(
                self.settings.redis,
                max_connections=self.settings.serve_max_ongoing_requests + 32,
                timeout=30,
                socket_connect_timeout=5,
                socket_timeout=30,
            )
            self._redis = Redis(connection_pool=pool)
            self._redis_loop = loop
        return self._redis

    @cached_property
    def producer(self) -> AsyncProducer:
        return AsyncProducer(producer_config(self.settings))

    @cached_property
    def topics(self) -> TopicAdmin:
        return TopicAdmin(self.settings)

    @property
    def streams(self) -> StreamRegistry:
        return StreamRegistry(self.redis)

    @cached_property
    def keyring(self) -> KeyRing:
        """Tenant data keys for encrypted streams, on a sync Redis client (any thread, any
        loop); unwrapped keys are cached, so the store is asked only on cache misses.
        InvalidInput when no master key is configured."""
        self._keys_redis = SyncRedis.from_url(self.settings.redis, socket_timeout=30)
        return keyring_from(self.settings, self._keys_redis)

    def cipher(self, stream: StreamRecord) -> EventCipher | None:
        """The stream's EventCipher, or None for a plain stream (nothing to seal or open)."""
        if not stream.encrypted:
            return None
        return EventCipher(self.keyring, stream.tenant_id, stream.stream_id)

    async def close(self) -> None:
        self.__dict__.pop("topics", None)  # its AdminClient disconnects once released
        if self.__dict__.pop("keyring", None) is not None and self._keys_redis is not None:
            self._keys_redis.close()
        producer = self.__dict__.pop("producer", None)
        if producer is not None:
            await asyncio.to_thread(producer.close)
        if self._redis is not None and self._redis_loop == _loop_id():
            await self._redis.aclose(close_connection_pool=True)
        self._redis = None


def _loop_id() -> int:
    try:
        return id(asyncio.get_running_loop())
    except RuntimeError:
        return 0


_shared: dict[str, Bus] = {}


def shared_bus(settings: Settings | None = None) -> Bus:
    """One Bus per settings per process, so SDK services built separately share their clients."""
    settings = settings or get_settings()
    key = settings.identity()  # Settings holds a dict (quota overrides): not hashable
    if key not in _shared:
        _shared[key] = Bus(settings)
    return _shared[key]
