"""The Kubo RPC's policy from ``[api]``: allowed origins and authorizations, whose secrets are
read here (file, env or systemd credential, as the pinning secrets) and never logged."""

from __future__ import annotations

from ..config import ApiSection
from ..pinning.base import load_credentials
from .policy import Authorization, RpcPolicy


def rpc_policy(api: ApiSection) -> RpcPolicy:
    """ConfigError (exit 2) when a secret cannot be read or does not parse."""
    auths = []
    for name, entry in sorted((api.authorizations or {}).items()):
        credentials = load_credentials(entry["secret"],
                                       f"[api.authorizations.{name}] secret")
        assert credentials is not None
        auths.append(Authorization(name, credentials.header(),
                                   tuple(entry.get("allowed_paths") or ("/api/v0",))))
    return RpcPolicy(api.allowed_origins, auths)
