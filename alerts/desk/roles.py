"""Who may do what on the security desk, and which stores a signed-in user sees.

Every permission is a property of ``Principal`` so the web layer asks one question per action
(``principal.can_reopen``) and no role name is compared anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    GUARD = "guard"  # watches the feed and acknowledges alerts of their stores
    MANAGER = "manager"  # a guard who may also reopen/resolve, fetch evidence, read reports and the audit log
    ADMIN = "admin"  # every store, and user management


@dataclass(frozen=True)
class Principal:
    """A signed-in user (browser session or API token) as every desk check sees them."""

    user_id: int
    username: str
    role: Role
    stores: frozenset[str]  # the stores a guard or manager works for; ignored for an admin
    via_token: bool = False  # authenticated by an API token, not a browser session (no CSRF check applies)

    def store_filter(self) -> frozenset[str] | None:
        """The stores to filter every query by; None means every store (admin)."""
        return None if self.role is Role.ADMIN else self.stores

    def sees(self, store_id: str) -> bool:
        return self.role is Role.ADMIN or store_id in self.stores

    @property
    def can_acknowledge(self) -> bool:
        return True

    @property
    def can_reopen(self) -> bool:
        """Reopen and resolve alerts."""
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_download_evidence(self) -> bool:
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_mark_missed_theft(self) -> bool:
        """Mark on a camera's timeline a theft the model did not alert on (a training positive)."""
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_hold_evidence(self) -> bool:
        """Put a hold on an alert's evidence (never deleted) and release it."""
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_view_reports(self) -> bool:
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_view_audit(self) -> bool:
        return self.role in (Role.MANAGER, Role.ADMIN)

    @property
    def can_manage_users(self) -> bool:
        return self.role is Role.ADMIN
