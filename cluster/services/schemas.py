"""SchemaRegistryService: the tenant's schema registry (JSON Schema draft 2020-12 and Avro),
with Confluent Schema Registry's semantics: subjects hold numbered versions, a schema id names
one schema across subjects (registering an identical schema answers the same id), and a new
version must satisfy the subject's compatibility (else IncompatibleSchema, a 409).

Compatibility is set per tenant (the registry's default, BACKWARD unless set) and per subject;
the rules are pipelines.schemas. Storage and durability: cluster.stores.schemas (a compacted
topic, Redis as its cache). The Confluent-compatible API (serve.routes.schema_registry), the
seed's /api/v1/schemas and publish-time validation (cluster.services.validation) call this.
"""

from __future__ import annotations

from typing import Any

import orjson

from cluster.errors import (
    Conflict,
    IncompatibleSchema,
    InvalidInput,
    SchemaNotFound,
    SubjectNotFound,
    VersionNotFound,
)
from cluster.models.schemas import StoredSchema, SubjectVersion, VersionRef
from cluster.services.bus import Bus, shared_bus
from cluster.settings import Settings
from cluster.stores.schemas import SchemaStore
from pipelines.schemas import (
    DEFAULT_COMPATIBILITY,
    Compatibility,
    ParsedSchema,
    PayloadValidator,
    compatibility_of,
    compile_validator,
    incompatibilities,
    parse_schema,
)


def _parsed(stored: StoredSchema | SubjectVersion) -> ParsedSchema:
    """A schema the registry holds: parse_schema checked it when it was registered, and its text
    is that canonical form, so it is only loaded (not checked and compiled a second time)."""
    return ParsedSchema(stored.schema_type, orjson.loads(stored.schema_text), stored.schema_text)


class SchemaRegistryService:
    def __init__(self, settings: Settings | None = None, *, bus: Bus | None = None) -> None:
        self._bus = bus or shared_bus(settings)
        self._validators: dict[int, PayloadValidator] = {}  # ids never change their schema

    @property
    def store(self) -> SchemaStore:
        bus = self._bus
        return SchemaStore(bus.redis, bus.settings, bus.producer, bus.topics)

    # subjects and versions -------------------------------------------------------------------

    async def register(
        self, tenant_id: str, subject: str, schema_type: str | None, schema: str | Any
    ) -> SubjectVersion:
        """A new version of `subject` (or the existing one holding this very schema)."""
        parsed = parse_schema(schema_type, schema)
        _check_subject(subject)
        store = self.store
        async with store.locked(tenant_id):
            refs = await store.versions(tenant_id, subject)
            found = await self._matching(tenant_id, subject, refs, parsed)
            if found is not None:
                return found
            live = [r for r in refs if not r.deleted]
            existing = [_parsed(s) for s in await self._stored([r.id for r in live])]
            mode = await self.compatibility(tenant_id, subject)
            problems = incompatibilities(mode, parsed, existing)
            if problems:
                raise IncompatibleSchema(
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}" ({mode}): ' + "; ".join(problems),
                    errors=[{"message": p} for p in problems],
                )
            schema_id = await store.id_for(tenant_id, parsed.fingerprint)
            stored = None
            if schema_id is None:
                schema_id = await store.next_id()
                stored = StoredSchema(
                    id=schema_id,
                    tenant_id=tenant_id,
                    schema_type=parsed.schema_type,
                    schema_text=parsed.canonical,
                )
            ref = VersionRef(version=max((r.version for r in refs), default=0) + 1, id=schema_id)
            await store.put_versions(tenant_id, subject, [*refs, ref], [ref], [], stored)
        return SubjectVersion(
            subject=subject,
            version=ref.version,
            id=schema_id,
            schema_type=parsed.schema_type,
            schema_text=parsed.canonical,
        )

    async def _matching(
        self, tenant_id: str, subject: str, refs: list[VersionRef], parsed: ParsedSchema
    ) -> SubjectVersion | None:
        schema_id = await self.store.id_for(tenant_id, parsed.fingerprint)
        for ref in refs:
            if ref.id == schema_id and not ref.deleted:
                return SubjectVersion(
                    subject=subject,
                    version=ref.version,
                    id=ref.id,
                    schema_type=parsed.schema_type,
                    schema_text=parsed.canonical,
                )
        return None

    async def lookup(
        self, tenant_id: str, subject: str, schema_type: str | None, schema: str | Any
    ) -> SubjectVersion:
        """The version of `subject` holding this schema: SubjectNotFound, SchemaNotFound."""
        parsed = parse_schema(schema_type, schema)
        refs = await self._refs(tenant_id, subject)
        found = await self._matching(tenant_id, subject, refs, parsed)
        if found is None:
            raise SchemaNotFound(f"Schema not found under subject {subject!r}")
        return found

    async def subjects(self, tenant_id: str, *, deleted: bool = False) -> list[str]:
        found = await self.store.subjects(tenant_id)
        return sorted(s for s, refs in found.items() if deleted or any(not r.deleted for r in refs))

    async def versions(self, tenant_id: str, subject: str, *, deleted: bool = False) -> list[int]:
        refs = await self._refs(tenant_id, subject, deleted=deleted)
        return [r.version for r in refs if deleted or not r.deleted]

    async def version(
        self, tenant_id: str, subject: str, version: str | int, *, deleted: bool = False
    ) -> SubjectVersion:
        """A version by number, or `latest` / -1 (the newest one not deleted)."""
        refs = await self._refs(tenant_id, subject, deleted=deleted)
        ref = _pick(refs, subject, version, deleted)
        (stored,) = await self._stored([ref.id])
        return SubjectVersion(
            subject=subject,
            version=ref.version,
            id=ref.id,
            schema_type=stored.schema_type,
            schema_text=stored.schema_text,
            deleted=ref.deleted,
        )

    async def schema(self, tenant_id: str, schema_id: int) -> StoredSchema:
        stored = await self.store.schema(schema_id)
        if stored is None or stored.tenant_id != tenant_id:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        return stored

    async def stored_schemas(self, tenant_id: str, schema_ids: list[int]) -> list[StoredSchema]:
        """The tenant's schemas by id, in one Redis read; SchemaNotFound for one it lacks."""
        return await self._stored(schema_ids, tenant_id)

    async def schemas_by_id(self, tenant_id: str) -> list[tuple[str, VersionRef]]:
        """Every (subject, version) of the tenant, deleted ones left out, by schema id."""
        found = await self.store.subjects(tenant_id)
        pairs = [(s, r) for s, refs in found.items() for r in refs if not r.deleted]
        return sorted(pairs, key=lambda p: (p[1].id, p[0], p[1].version))

    async def delete_subject(self, tenant_id: str, subject: str, *, permanent: bool) -> list[int]:
        store = self.store
        async with store.locked(tenant_id):
            refs = await self._refs(tenant_id, subject, deleted=True)
            if permanent:
                if any(not r.deleted for r in refs):
                    raise Conflict(f"subject {subject!r} must be soft-deleted before permanently")
                await store.put_versions(tenant_id, subject, [], [], [r.version for r in refs])
                return [r.version for r in refs]
            live = [r for r in refs if not r.deleted]
            if not live:
                raise SubjectNotFound(f"Subject {subject!r} not found")
            gone = [r.model_copy(update={"deleted": True}) for r in live]
            kept = [r for r in refs if r.deleted] + gone
            await store.put_versions(tenant_id, subject, sorted(kept, key=_version), gone, [])
            return [r.version for r in live]

    async def delete_version(
        self, tenant_id: str, subject: str, version: str | int, *, permanent: bool
    ) -> int:
        store = self.store
        async with store.locked(tenant_id):
            refs = await self._refs(tenant_id, subject, deleted=True)
            ref = _pick(refs, subject, version, deleted=permanent)
            if permanent:
                if not ref.deleted:
                    raise Conflict(f"version {ref.version} must be soft-deleted before permanently")
                rest = [r for r in refs if r.version != ref.version]
                await store.put_versions(tenant_id, subject, rest, [], [ref.version])
            else:
                gone = ref.model_copy(update={"deleted": True})
                rest = [gone if r.version == ref.version else r for r in refs]
                await store.put_versions(tenant_id, subject, rest, [gone], [])
            return ref.version

    async def test_compatibility(
        self,
        tenant_id: str,
        subject: str,
        version: str | int,
        schema_type: str | None,
        schema: str | Any,
    ) -> list[str]:
        """Why the schema could not follow `version` under the subject's mode ([]: it could)."""
        parsed = parse_schema(schema_type, schema)
        against = await self.version(tenant_id, subject, version)
        mode = await self.compatibility(tenant_id, subject)
        return incompatibilities(mode, parsed, [_parsed(against)])

    # the seed's /api/v1/schemas face: a subject per schema name, tagged with its event type ---

    async def register_for_event(
        self,
        tenant_id: str,
        schema_name: str,
        event_type: str,
        schema_type: str,
        schema: str | Any,
    ) -> SubjectVersion:
        registered = await self.register(tenant_id, schema_name, schema_type, schema)
        if (await self.store.event_types(tenant_id)).get(schema_name) != event_type:
            await self.store.put_event_type(tenant_id, schema_name, event_type)
        return registered

    async def event_types(self, tenant_id: str) -> dict[str, str]:
        """Subject -> event type, for subjects registered through /api/v1/schemas."""
        return await self.store.event_types(tenant_id)

    # configuration ---------------------------------------------------------------------------

    async def compatibility(self, tenant_id: str, subject: str | None = None) -> Compatibility:
        """The subject's mode, else the tenant registry's, else BACKWARD."""
        store = self.store
        level = await store.config(tenant_id, subject) if subject else None
        level = level or await store.config(tenant_id, "")
        return compatibility_of(level) if level else DEFAULT_COMPATIBILITY

    async def set_compatibility(
        self, tenant_id: str, subject: str | None, level: str
    ) -> Compatibility:
        mode = compatibility_of(level)
        await self.store.put_config(tenant_id, subject or "", mode)
        return mode

    async def clear_compatibility(self, tenant_id: str, subject: str | None) -> Compatibility:
        previous = await self.compatibility(tenant_id, subject)
        await self.store.put_config(tenant_id, subject or "", None)
        return previous

    # validators ------------------------------------------------------------------------------

    async def validators(
        self, tenant_id: str, schema_ids: list[int]
    ) -> dict[int, PayloadValidator]:
        """Compiled validators, cached per schema id (one Redis read for those not cached)."""
        missing = [i for i in schema_ids if i not in self._validators]
        if missing:
            for stored in await self._stored(missing, tenant_id):
                self._validators[stored.id] = compile_validator(_parsed(stored))
        return {i: self._validators[i] for i in schema_ids}

    async def resolve(self, tenant_id: str, ref: int | str) -> int:
        """A schema id from an id, a subject (its latest version) or `subject:version`."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return (await self.schema(tenant_id, int(ref))).id
        subject, _, version = ref.rpartition(":") if ":" in ref else (ref, "", "latest")
        return (await self.version(tenant_id, subject, version)).id

    # helpers ---------------------------------------------------------------------------------

    async def _refs(
        self, tenant_id: str, subject: str, *, deleted: bool = False
    ) -> list[VersionRef]:
        refs = await self.store.versions(tenant_id, subject)
        if not refs or not (deleted or any(not r.deleted for r in refs)):
            raise SubjectNotFound(f"Subject {subject!r} not found")
        return refs

    async def _stored(self, ids: list[int], tenant_id: str | None = None) -> list[StoredSchema]:
        found = await self.store.schemas(ids) if ids else []
        for schema_id, stored in zip(ids, found, strict=True):
            if stored is None or (tenant_id is not None and stored.tenant_id != tenant_id):
                raise SchemaNotFound(f"Schema {schema_id} not found")
        return [s for s in found if s is not None]


def _version(ref: VersionRef) -> int:
    return ref.version


def _pick(refs: list[VersionRef], subject: str, version: str | int, deleted: bool) -> VersionRef:
    visible = [r for r in refs if deleted or not r.deleted]
    if version in ("latest", "-1", -1):
        if not visible:
            raise VersionNotFound(f"Version latest not found for subject {subject!r}")
        return visible[-1]
    try:
        number = int(version)
    except ValueError:
        raise InvalidInput(
            f"version {version!r} must be a positive integer, 'latest' or -1"
        ) from None
    if number < 1:
        raise InvalidInput(f"version {version!r} must be a positive integer, 'latest' or -1")
    for ref in visible:
        if ref.version == number:
            return ref
    raise VersionNotFound(f"Version {number} not found for subject {subject!r}")


def _check_subject(subject: str) -> None:
    if not subject or len(subject) > 255 or any(ord(c) < 0x20 for c in subject):
        raise InvalidInput("a subject is 1-255 characters without control characters")
