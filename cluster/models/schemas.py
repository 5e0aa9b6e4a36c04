"""What the schema registry records: a subject's versions, a schema by id, and what a
registration answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipelines.schemas import SchemaType


class VersionRef(BaseModel):
    """One version of a subject: which schema id it holds, and whether it was (soft) deleted."""

    version: int
    id: int
    deleted: bool = False


class StoredSchema(BaseModel):
    """A schema by id: ids are unique across the registry, and visible to their tenant only."""

    id: int
    tenant_id: str
    schema_type: SchemaType
    schema_text: str = Field(description="The schema, canonical (sorted keys, no whitespace).")


class SubjectVersion(BaseModel):
    """A subject's version with its schema: what `subjects/{s}/versions/{v}` answers."""

    subject: str
    version: int
    id: int
    schema_type: SchemaType
    schema_text: str
    deleted: bool = False
