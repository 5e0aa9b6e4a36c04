"""What the bus records about a pipeline: its spec, where it reads, and its Ray job."""

from __future__ import annotations

from pydantic import BaseModel

from pipelines.spec import PipelineSpec


class PipelineRecord(BaseModel):
    pipeline_id: str
    tenant_id: str
    stream_id: str
    kafka_topic: str
    partitions: int
    owners: int
    spec: PipelineSpec
    created_by: str
    created_at: str
    job_id: str
    output_topic: str | None = None  # esb.<tenant>.<sinks.kafka_topic>
    # A join's right side on another (co-partitioned) stream: owners read its same partitions.
    right_stream_id: str | None = None
    right_topic: str | None = None
    encrypted: bool = False  # the stream's: partition owners decrypt before decoding
    stopped: bool = False

    @property
    def consumer_group(self) -> str:
        return f"esb.{self.tenant_id}.pipeline.{self.pipeline_id}"


def spread(partitions: int, owners: int) -> list[list[int]]:
    """Partitions dealt round-robin over owners: owner i gets i, i+M, i+2M, ...

    >>> spread(5, 2)
    [[0, 2, 4], [1, 3]]
    """
    return [list(range(i, partitions, owners)) for i in range(min(owners, partitions))]
