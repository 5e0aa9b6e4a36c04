"""Request and response bodies of the schema APIs: Confluent's (camelCase, as its clients
expect) at /schema-registry, and the seed's /api/v1/schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from pipelines.schemas import Compatibility


class ConfluentModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class SchemaRequest(ConfluentModel):
    """What Confluent clients send to register, look up or test a schema."""

    schema_text: str = Field(alias="schema", description="The schema, as a JSON string.")
    schema_type: str | None = Field(default=None, alias="schemaType", description="AVRO if absent")
    references: list[dict[str, Any]] = Field(default_factory=list)


class RegisteredOut(ConfluentModel):
    id: int
    subject: str | None = None
    version: int | None = None
    schema_type: str | None = Field(default=None, alias="schemaType")
    schema_text: str | None = Field(default=None, alias="schema")


class SchemaOut(ConfluentModel):
    schema_text: str = Field(alias="schema")
    schema_type: str = Field(alias="schemaType")
    references: list[dict[str, Any]] = Field(default_factory=list)


class SubjectVersionRef(ConfluentModel):
    subject: str
    version: int


class CompatibilityOut(ConfluentModel):
    is_compatible: bool
    messages: list[str] | None = None


class ConfigIn(ConfluentModel):
    compatibility: str


class ConfigOut(ConfluentModel):
    compatibility: Compatibility


class ConfigLevelOut(ConfluentModel):
    compatibility_level: Compatibility = Field(alias="compatibilityLevel")


class SubjectList(RootModel[list[str]]):
    """Subject names."""


class VersionList(RootModel[list[int]]):
    """Version numbers, oldest first."""


class SchemaTypeList(RootModel[list[str]]):
    """The schema types this registry accepts."""


class VersionNumber(RootModel[int]):
    """The deleted version."""


class SchemaDocument(RootModel[Any]):
    """The schema itself (JSON)."""


class SubjectVersionRefs(RootModel[list[SubjectVersionRef]]):
    """Where a schema id is used."""


class ConfluentErrorOut(BaseModel):
    error_code: int
    message: str


# /api/v1/schemas ------------------------------------------------------------------------------


class EventSchemaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_name: str = Field(min_length=1, max_length=255, description="Its registry subject.")
    event_type: str = Field(min_length=1, max_length=256)
    schema_type: Literal["json", "avro"] = "json"
    schema_: dict[str, Any] | list[Any] | str | bool = Field(
        alias="schema", description="The JSON Schema (draft 2020-12) or Avro schema."
    )


class EventSchemaCreated(BaseModel):
    schema_id: int
    version: int
    schema_name: str
    event_type: str
    schema_type: Literal["json", "avro"]


class EventSchemaOut(EventSchemaCreated):
    schema_: Any = Field(serialization_alias="schema")


class EventSchemaList(BaseModel):
    schemas: list[EventSchemaCreated]


class StreamSchemasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schemas: dict[str, int | str] = Field(
        description="Event type -> schema id, subject (its latest version) or subject:version."
    )
