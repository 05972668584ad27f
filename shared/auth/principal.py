"""The authenticated caller, as the rest of the app sees it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    app_id: str  # lower-case GUID from `appid` (v1) or `azp` (v2)
    roles: frozenset[str] = frozenset()
    tenant_id: str | None = None
    claims: dict = field(default_factory=dict, compare=False, hash=False)

    def is_admin(self, admin_role: str, admin_apps: list[str]) -> bool:
        return admin_role in self.roles or self.app_id in {a.lower() for a in admin_apps}
