"""The clients one process shares: Redis, the idempotent producer, topic admin, the registry.

Created lazily, so importing the SDK or building a service touches no network.
"""

from __future__ import annotations

import asyncio
from functools import cached_property

from redis.asyncio import BlockingConnectionPool, Redis

from cluster.kafka_clients import AsyncProducer, producer_config
from cluster.registry import StreamRegistry
from cluster.settings import Settings, get_settings
from cluster.topics import TopicAdmin


class Bus:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._redis: Redis | None = None
        self._redis_loop = 0

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

    async def close(self) -> None:
        self.__dict__.pop("topics", None)  # its AdminClient disconnects once released
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
    key = settings.model_dump_json()  # Settings holds a dict (quota overrides): not hashable
    if key not in _shared:
        _shared[key] = Bus(settings)
    return _shared[key]
