"""Roles: which stores a principal sees and what each role may do."""

from __future__ import annotations

import pytest

from alerts.desk.roles import Principal, Role

PERMISSIONS = ("can_acknowledge", "can_reopen", "can_download_evidence", "can_hold_evidence",
               "can_view_reports", "can_view_audit",
               "can_manage_users")


@pytest.mark.parametrize("role, allowed", [
    (Role.GUARD, {"can_acknowledge"}),
    (Role.MANAGER, set(PERMISSIONS) - {"can_manage_users"}),
    (Role.ADMIN, set(PERMISSIONS)),
])
def test_permissions(role: Role, allowed: set[str]) -> None:
    principal = Principal(1, "u", role, frozenset({"store-1"}))
    assert {p for p in PERMISSIONS if getattr(principal, p)} == allowed


@pytest.mark.parametrize("role, store_filter, sees_other", [
    (Role.GUARD, frozenset({"store-1"}), False),
    (Role.MANAGER, frozenset({"store-1"}), False),
    (Role.ADMIN, None, True),
])
def test_store_visibility(role: Role, store_filter: frozenset[str] | None, sees_other: bool) -> None:
    principal = Principal(1, "u", role, frozenset({"store-1"}))
    assert principal.store_filter() == store_filter
    assert principal.sees("store-1")
    assert principal.sees("store-2") is sees_other
