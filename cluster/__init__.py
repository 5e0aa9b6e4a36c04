"""Control plane and infrastructure: settings, Kafka and Redis clients, the stream registry,
the local stack (`esb up`) and the `esb` CLI."""
