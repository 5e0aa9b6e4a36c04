"""Security building blocks: bearer tokens, role-based access, tenant rules, encryption at
rest and per-tenant quotas. Routes wire them in; nothing here knows about HTTP.

Modules: `tokens` (verify/mint JWTs), `principal` (who is calling), `access` (roles, tenant
checks, client-settable fields), `encryption` + `keystore` (AES-256-GCM, tenant data keys),
`quotas` (Redis token buckets), `event_crypto` (sealed CloudEvents), `tls` (certificates),
`webhooks` (signatures, the SSRF guard).
"""

from cluster.errors import (
    DecryptionFailed,
    Forbidden,
    KeyDeleted,
    TooManyRequests,
    Unauthorized,
)
from cluster.security.access import (
    PERMISSIONS,
    SERVER_OWNED_FIELDS,
    Action,
    authorize,
    same_tenant,
    strip_client_fields,
)
from cluster.security.config import AuthConfig, auth_config_from
from cluster.security.encryption import KeyRing, MasterKey, MasterKeys
from cluster.security.keystore import InMemoryKeyStore, RedisKeyStore, WrappedKeyStore
from cluster.security.principal import ROLES, Principal, Role, is_valid_tenant_id
from cluster.security.quotas import QuotaLimiter, TenantQuota, quota_from
from cluster.security.tokens import TokenVerifier, bearer_token, mint_token, public_jwk

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "SERVER_OWNED_FIELDS",
    "Action",
    "AuthConfig",
    "DecryptionFailed",
    "Forbidden",
    "InMemoryKeyStore",
    "KeyDeleted",
    "KeyRing",
    "MasterKey",
    "MasterKeys",
    "Principal",
    "QuotaLimiter",
    "RedisKeyStore",
    "Role",
    "TenantQuota",
    "TokenVerifier",
    "TooManyRequests",
    "Unauthorized",
    "WrappedKeyStore",
    "auth_config_from",
    "authorize",
    "bearer_token",
    "is_valid_tenant_id",
    "mint_token",
    "public_jwk",
    "quota_from",
    "same_tenant",
    "strip_client_fields",
]
