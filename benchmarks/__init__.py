"""The throughput and latency suite: `python -m benchmarks [--quick]` (see benchmarks/README.md).

Not part of the installed distribution; it runs from a checkout, against a private local stack.
"""
