"""The desk bench's accounting: which client should get which alert, and what counts as late or missing."""

from __future__ import annotations

import pytest

from tests.bench.bench_desk import ClientSpec, client_plan, fan_out_stats

ADMIN = ClientSpec("admin", "admin", None)
GUARD_A = ClientSpec("guard-a", "guard", frozenset({"a"}))
GUARD_B = ClientSpec("guard-b", "guard", frozenset({"b"}))
COMMITTED = {"x": (100.0, "a"), "y": (200.0, "b")}


@pytest.mark.parametrize(
    ("clients", "expected", "delivered", "missing", "unexpected", "p95_fan_out_s", "max_delay_s"),
    [
        # everyone got what they may see
        ([(ADMIN, {"x": 100.1, "y": 200.3}), (GUARD_A, {"x": 100.2}), (GUARD_B, {"y": 200.1})],
         4, 4, 0, 0, 0.295, 0.3),
        # a guard missed its store's alert: that alert has no completion time
        ([(ADMIN, {"x": 100.1, "y": 200.3}), (GUARD_A, {}), (GUARD_B, {"y": 200.1})],
         4, 3, 1, 0, 0.3, 0.3),
        # a guard received another store's alert: a leak, not a delivery
        ([(ADMIN, {"x": 100.1, "y": 200.3}), (GUARD_A, {"x": 100.2, "y": 200.2}), (GUARD_B, {"y": 200.1})],
         4, 4, 0, 1, 0.295, 0.3),
        # alerts the bench did not raise are ignored
        ([(ADMIN, {"x": 100.1, "y": 200.3, "other": 1.0})], 2, 2, 0, 0, 0.29, 0.3),
    ],
)
def test_fan_out_stats(clients: list[tuple[ClientSpec, dict[str, float]]], expected: int, delivered: int,
                       missing: int, unexpected: int, p95_fan_out_s: float, max_delay_s: float) -> None:
    stats = fan_out_stats(COMMITTED, clients)
    assert (stats["expected"], stats["delivered"], stats["missing"], stats["unexpected"]) == (
        expected, delivered, missing, unexpected)
    assert stats["p95_fan_out_s"] == pytest.approx(p95_fan_out_s, abs=1e-3)
    assert stats["max_delay_s"] == pytest.approx(max_delay_s, abs=1e-3)
    assert stats["alerts_incomplete"] == (1 if missing else 0)


def test_fan_out_splits_poll_and_delivery_by_the_desks_stamp() -> None:
    stats = fan_out_stats({"x": (100.0, "a")}, [(ADMIN, {"x": 100.25}), (GUARD_A, {"x": 100.3})], {"x": 100.2})
    assert stats["p50_poll_s"] == pytest.approx(0.2)
    assert stats["p50_delivery_s"] == pytest.approx(0.075)


def test_fan_out_with_nothing_received_has_no_percentiles() -> None:
    stats = fan_out_stats(COMMITTED, [(ADMIN, {})])
    assert stats["missing"] == 2 and stats["p95_delay_s"] is None and stats["p95_fan_out_s"] is None


def test_client_plan_mixes_roles_and_covers_every_store() -> None:
    plan = client_plan(200, stores=("s0", "s1", "s2", "s3"))
    roles = [spec.role for spec in plan]
    assert (roles.count("admin"), roles.count("manager"), roles.count("guard")) == (50, 25, 125)
    for store in ("s0", "s1", "s2", "s3"):
        assert sum(spec.stores == frozenset({store}) for spec in plan) > 0
    assert all(len(spec.stores) == 2 for spec in plan if spec.role == "manager" and spec.stores is not None)
    assert len({spec.username for spec in plan if spec.role == "admin"}) == 1
