"""Observability: metrics (Ray's metrics path, exported as `esb_*`), structured logs, traces.

- :mod:`cluster.observability.metrics`: the bus's instruments, recorded through
  `ray.util.metrics`, so every process of the cluster reports through Ray's per-node metrics
  agent (no home-made aggregation).
- :mod:`cluster.observability.exposition`: reads every node's Ray metrics export and serves the
  `esb_*` families, renamed from Ray's `ray_esb_*`.
- :mod:`cluster.observability.logs`: JSON or text log lines, one logger per package.
- :mod:`cluster.observability.tracing`: OpenTelemetry spans carried in CloudEvents'
  `traceparent`.
"""
