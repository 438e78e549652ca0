"""Security desk live feed: 200 concurrent ``/api/stream`` clients, the delay from an alert reaching the desk
to it arriving at every client that may see it, and what serving them costs the desk.

The desk runs in a process of its own (``python -m tests.bench.bench_desk --serve CONFIG PORT_FILE``: the
settings, ``Database.upgrade``, ``create_app`` and the ``DeskServer`` that ``aislewatch run`` uses, on a free
port), so its CPU and memory are read apart from the clients' (``/proc/PID/stat`` utime+stime,
``/proc/PID/status`` VmRSS and VmHWM; psutil is not a dependency).  The database is a SQLite file under
``build/bench-desk/`` (wiped at the start) with ``STORES`` stores; the desk polls it every
``desk.feed_poll_s`` (the default, 0.25 s).

The bench process opens ``CLIENTS`` server-sent-event streams (quick: 50) in one asyncio loop over one
``httpx.AsyncClient``, each with an API token of its own (``Accounts.create_token``) and ``?after=`` the
newest event id, so nothing is replayed: a quarter act as an admin (every store), an eighth as a manager of
two stores, the rest as the guard of one store, so the per-store filter is exercised.  Once every stream
has said ``ready``, a thread raises ``ALERTS`` alerts (quick: 10) at ``ALERTS_PER_S`` round-robin across
the stores through ``Database.write_alerts`` — the worker's write: the alert row and its "raised" event in
one transaction.  An alert reaches the desk when that call returns (the commit); each client stamps
``time.time()`` as it parses the event's ``data:`` line (same machine, same clock).

Per (alert, client that may see it): ``delay = received - committed``.  Reported: p50/p95/p99/max of those
delays; per alert the fan-out completion (the last eligible client's delay) p50/p95/max; ``expected`` /
``delivered`` / ``missing`` pairs (a pair not delivered within ``DRAIN_S`` of the last alert is missing and
fails the section), ``unexpected`` (an alert a client may not see: a store-filter leak), ``duplicates``,
``dropped`` (streams that ended or failed before the bench closed them); split by the desk's own
``sent_at`` stamp into ``poll`` (committed → published by the poller, up to one poll interval) and
``delivery`` (published → received).  The desk's CPU over the measuring window (first alert → last
delivery) as % of one core, with the connecting phase apart, and its RSS idle, with the clients connected
and at the end, plus VmHWM; the bench process's own CPU (the clients share the 2 cores);
``load_average`` before and after.  Target: ``p95_fan_out_s`` < 1 s with every pair delivered.

``run(quick=False) -> dict``; ``python -m tests.bench desk [--quick]`` merges it into build/bench.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.db import Database  # noqa: E402
from common.models import AlertEvent  # noqa: E402
from common.schemas import AlertKind, AlertMessage  # noqa: E402
from common.settings import load_settings  # noqa: E402

WORK_DIR = ROOT / "build" / "bench-desk"
STORES = tuple(f"bench-store-{i}" for i in range(4))
CAMERAS_PER_STORE = 2
CLIENTS = 200
ALERTS = 30
ALERTS_PER_S = 2.0
DRAIN_S = 10.0
CONNECT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
TARGET_P95_FAN_OUT_S = 1.0
PASSWORD = "bench-desk-password"  # a throw-away account in a throw-away database


# -- who the clients are -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    """One live client: the user its token acts as and the stores it may see (None = every store)."""

    username: str
    role: str
    stores: frozenset[str] | None

    def sees(self, store_id: str) -> bool:
        return self.stores is None or store_id in self.stores


def client_plan(n: int, stores: Sequence[str] = STORES) -> list[ClientSpec]:
    """``n`` clients: 2 in 8 admins, 1 in 8 the manager of two neighbouring stores, the rest the guard of one."""
    plan = []
    for i in range(n):
        slot, store = i % 8, i // 8 % len(stores)
        if slot in (0, 4):
            plan.append(ClientSpec("bench-admin", "admin", None))
        elif slot == 7:
            pair = frozenset({stores[store], stores[(store + 1) % len(stores)]})
            plan.append(ClientSpec(f"bench-manager-{store}", "manager", pair))
        else:
            one = stores[(store + slot) % len(stores)]
            plan.append(ClientSpec(f"bench-guard-{one}", "guard", frozenset({one})))
    return plan


# -- the accounting (pure) ---------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def fan_out_stats(
    committed: Mapping[str, tuple[float, str]],
    clients: Sequence[tuple[ClientSpec, Mapping[str, float]]],
    published: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Delays of every (alert, eligible client) pair from ``committed`` (alert id → (commit time, store)) and
    each client's ``received`` (alert id → receive time); ``published`` (alert id → the desk's ``sent_at``)
    splits them into poll and delivery.  A pair never received is ``missing``; an alert received by a client
    that may not see it is ``unexpected``; received alerts the bench did not raise are ignored."""
    delays: list[float] = []
    completions: list[float] = []
    delivery: list[float] = []
    missing = unexpected = expected = 0
    incomplete: list[str] = []
    for alert_id, (at, store_id) in committed.items():
        latest: float | None = None
        complete = True
        for spec, received in clients:
            got = received.get(alert_id)
            if not spec.sees(store_id):
                unexpected += got is not None
                continue
            expected += 1
            if got is None:
                missing += 1
                complete = False
                continue
            delays.append(got - at)
            latest = got - at if latest is None else max(latest, got - at)
            if published and alert_id in published:
                delivery.append(got - published[alert_id])
        if complete and latest is not None:
            completions.append(latest)
        elif not complete:
            incomplete.append(alert_id)
    poll = [published[a] - at for a, (at, _) in committed.items() if published and a in published]
    return {
        "alerts": len(committed),
        "expected": expected,
        "delivered": len(delays),
        "missing": missing,
        "unexpected": unexpected,
        "alerts_incomplete": len(incomplete),
        "p50_delay_s": _pct(delays, 50),
        "p95_delay_s": _pct(delays, 95),
        "p99_delay_s": _pct(delays, 99),
        "max_delay_s": round(max(delays), 3) if delays else None,
        # An incomplete alert has no completion time: it is counted in alerts_incomplete and fails the target.
        "p50_fan_out_s": _pct(completions, 50),
        "p95_fan_out_s": _pct(completions, 95),
        "max_fan_out_s": round(max(completions), 3) if completions else None,
        "p50_poll_s": _pct(poll, 50),
        "p95_poll_s": _pct(poll, 95),
        "p50_delivery_s": _pct(delivery, 50),
        "p95_delivery_s": _pct(delivery, 95),
    }


# -- the desk process --------------------------------------------------------------------------------------


def bench_config(work: Path, poll_s: float) -> dict[str, Any]:
    return {
        "stores": [
            {"id": s, "name": f"Bench store {i}",
             "cameras": [{"id": f"{s}-cam-{c}", "source": f"bench://{s}/{c}"} for c in range(CAMERAS_PER_STORE)]}
            for i, s in enumerate(STORES)
        ],
        "database": {"url": f"sqlite:///{work / 'desk.db'}"},
        "desk": {"host": "127.0.0.1", "port": 0, "feed_poll_s": poll_s},
        "service": {"evidence_dir": str(work / "evidence"), "log_level": "WARNING"},
    }


def serve(config_path: str, port_file: str) -> None:
    """The desk process: settings, schema, stores, the app on a ``DeskServer``; writes its port to
    ``port_file`` once it listens and serves until SIGTERM or SIGINT."""
    import logging

    from alerts.desk.app import create_app
    from alerts.desk.server import DeskServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings(config_path)
    db = Database.from_settings(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        db.upgrade()
        db.sync_stores(settings)
        server = DeskServer(create_app(settings, db), settings.desk.host, settings.desk.port).start()
        try:
            tmp = Path(port_file + ".tmp")
            tmp.write_text(str(server.port))
            tmp.replace(port_file)
            while not stop.wait(1.0):
                if not server.alive:
                    raise SystemExit("the desk server stopped")
        finally:
            server.stop()
    finally:
        db.close()


class DeskProcess:
    """The desk child process; ``close`` terminates it (then kills it) whatever state it is in."""

    def __init__(self, config_path: Path, work: Path) -> None:
        self.port_file = work / "desk.port"
        self.log_path = work / "desk.log"
        self.port_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AISLEWATCH")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_desk", "--serve", str(config_path), str(self.port_file)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.pid = self.process.pid

    def wait_listening(self, timeout_s: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the desk exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the desk did not listen within {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        return f"http://127.0.0.1:{int(self.port_file.read_text())}"

    def cpu_s(self) -> float:
        """User + system CPU seconds of the desk process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak so far) in MB."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
        return values

    def close(self) -> int | None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            self._log.close()
            self.port_file.unlink(missing_ok=True)
        return self.process.returncode


# -- the clients -------------------------------------------------------------------------------------------


@dataclass
class Client:
    spec: ClientSpec
    token: str
    received: dict[str, float] = field(default_factory=dict)  # alert id → when its event was parsed
    published: dict[str, float] = field(default_factory=dict)  # alert id → the desk's sent_at
    duplicates: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None  # why the stream ended before the bench closed it


async def listen(http: Any, url: str, after: int, client: Client) -> None:
    """One SSE stream: records each ``alert`` event's arrival; returns (setting ``ended``) if the stream ends."""
    headers = {"Authorization": f"Bearer {client.token}", "Accept": "text/event-stream"}
    try:
        async with http.stream("GET", f"{url}/api/stream", params={"after": after}, headers=headers) as response:
            if response.status_code != 200:
                client.ended = f"HTTP {response.status_code}"
                return
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    now = time.time()
                    if event == "ready":
                        client.ready.set()
                    elif event == "alert":
                        payload = json.loads(line[5:])
                        if payload.get("event") == "raised":
                            alert_id = payload["alert"]["alert_id"]
                            if alert_id in client.received:
                                client.duplicates += 1
                            else:
                                client.received[alert_id] = now
                                client.published[alert_id] = float(payload["sent_at"])
                elif not line:
                    event = ""
        client.ended = "stream ended"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        client.ended = f"{type(exc).__name__}: {exc}"


def raise_alerts(db: Database, n: int, per_s: float, committed: dict[str, tuple[float, str]]) -> None:
    """``n`` alerts at ``per_s`` on average, round-robin across the stores; records each one's commit time.

    The gaps are jittered (uniform 0.5-1.5 x the mean, seeded): at exact multiples of the poll interval every
    alert would land at the same phase of the poller's cycle, and the poll delay would not be sampled."""
    gaps = np.random.default_rng(0).uniform(0.5, 1.5, n) / per_s
    at = time.monotonic()
    for i in range(n):
        at += gaps[i] if i else 0.0
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        store = STORES[i % len(STORES)]
        alert = AlertMessage(
            alert_id=f"bench-desk-{uuid.uuid4().hex[:16]}", alert_kind=AlertKind.SUSPICIOUS_ACTIVITY,
            store_id=store, camera_id=f"{store}-cam-{i % CAMERAS_PER_STORE}", raised_at=datetime.now(UTC),
            probability=0.9, clip_ids=(f"bench-clip-{i}",), message="bench",
        )
        db.write_alerts([alert])
        committed[alert.alert_id] = (time.time(), store)


def _expected_pairs(committed: Mapping[str, tuple[float, str]], clients: Sequence[Client]) -> int:
    return sum(c.spec.sees(store) for _, store in committed.values() for c in clients)


def _delivered_pairs(committed: Mapping[str, tuple[float, str]], clients: Sequence[Client]) -> int:
    return sum(a in c.received for a in committed for c in clients)


async def measure(url: str, desk: DeskProcess, db: Database, clients: list[Client], n_alerts: int) -> dict[str, Any]:
    import httpx

    with db.session() as session:
        after = int(session.scalar(select(func.max(AlertEvent.id))) or 0)
    report: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=len(clients) + 10, max_keepalive_connections=len(clients) + 10)
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        cpu0, wall0 = desk.cpu_s(), time.monotonic()
        tasks = [asyncio.create_task(listen(http, url, after, c), name=f"client-{i}") for i, c in enumerate(clients)]
        try:
            waiting = [asyncio.create_task(c.ready.wait()) for c in clients]
            done, pending = await asyncio.wait(waiting, timeout=CONNECT_TIMEOUT_S)
            for waiter in pending:
                waiter.cancel()
            report["connected"] = len(done)
            report["connect_s"] = round(time.monotonic() - wall0, 2)
            report["connect_desk_cpu_s"] = round(desk.cpu_s() - cpu0, 2)
            report["desk_rss_connected_mb"] = desk.memory_mb()["VmRSS"]
            if pending:
                failed = [c.ended for c in clients if not c.ready.is_set()]
                raise RuntimeError(f"{len(pending)} of {len(clients)} clients not ready in {CONNECT_TIMEOUT_S:.0f} s: "
                                   f"{sorted({str(f) for f in failed})[:5]}")

            committed: dict[str, tuple[float, str]] = {}
            bench_cpu0, desk_cpu0, wall0 = time.process_time(), desk.cpu_s(), time.monotonic()
            raiser = asyncio.create_task(asyncio.to_thread(raise_alerts, db, n_alerts, ALERTS_PER_S, committed))
            rss_peak = 0.0
            deadline: float | None = None
            while True:
                await asyncio.sleep(0.1)
                rss_peak = max(rss_peak, desk.memory_mb()["VmRSS"])
                if raiser.done():
                    raiser.result()
                    deadline = deadline or time.monotonic() + DRAIN_S
                    if _delivered_pairs(committed, clients) == _expected_pairs(committed, clients):
                        break
                    if time.monotonic() > deadline:
                        break
            wall = time.monotonic() - wall0
            desk_cpu = desk.cpu_s() - desk_cpu0
            bench_cpu = time.process_time() - bench_cpu0
            memory = desk.memory_mb()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    report.update(fan_out_stats(committed, [(c.spec, c.received) for c in clients],
                                {a: t for c in clients for a, t in c.published.items()}))
    report.update(
        duplicates=sum(c.duplicates for c in clients),
        dropped=sum(c.ended is not None for c in clients),
        dropped_reasons=sorted({c.ended for c in clients if c.ended is not None}),
        window_s=round(wall, 2),
        desk_cpu_s=round(desk_cpu, 2),
        desk_cpu_percent=round(100 * desk_cpu / wall, 1),
        bench_cpu_percent=round(100 * bench_cpu / wall, 1),
        desk_rss_peak_window_mb=rss_peak,
        desk_rss_end_mb=memory["VmRSS"],
        desk_rss_hwm_mb=memory["VmHWM"],
    )
    return report


# -- the section -------------------------------------------------------------------------------------------


def _create_tokens(db: Database, settings: Any, plan: Sequence[ClientSpec]) -> list[str]:
    from alerts.desk.accounts import Accounts

    accounts = Accounts.from_settings(db, settings)
    users = {spec.username: spec for spec in plan}
    for name, spec in users.items():
        accounts.add_user(name, PASSWORD, spec.role, sorted(spec.stores or ()))
    return [accounts.create_token(spec.username, f"bench client {i}") for i, spec in enumerate(plan)]


def run(quick: bool = False) -> dict:
    """200 live clients (quick: 50) on one desk process; p95 fan-out of 30 alerts (quick: 10) at 2/s."""
    n_clients, n_alerts = (50, 10) if quick else (CLIENTS, ALERTS)
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    poll_s = load_settings(None).desk.feed_poll_s
    config_path = WORK_DIR / "desk.yaml"
    config_path.write_text(yaml.safe_dump(bench_config(WORK_DIR, poll_s), sort_keys=False))
    settings = load_settings(config_path)
    plan = client_plan(n_clients)
    report: dict[str, Any] = {
        "clients": n_clients,
        "clients_by_role": {r: sum(s.role == r for s in plan) for r in ("admin", "manager", "guard")},
        "stores": len(STORES),
        "alerts_raised": n_alerts,
        "alerts_per_s": ALERTS_PER_S,
        "feed_poll_s": poll_s,
        "database": "sqlite",
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "desk_log": str(WORK_DIR.relative_to(ROOT) / "desk.log"),
    }
    db = Database.from_settings(settings)
    desk: DeskProcess | None = None
    try:
        db.upgrade()
        db.sync_stores(settings)
        clients = [Client(spec, token) for spec, token in zip(plan, _create_tokens(db, settings, plan), strict=True)]
        desk = DeskProcess(config_path, WORK_DIR)
        url = desk.wait_listening()
        time.sleep(1.0)  # the poller's first read (its high-water mark), and the process settles
        report["desk_rss_idle_mb"] = desk.memory_mb()["VmRSS"]
        report.update(asyncio.run(measure(url, desk, db, clients, n_alerts)))
    finally:
        if desk is not None:
            report["desk_exit_code"] = desk.close()
        db.close()
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    report["target_p95_fan_out_s"] = TARGET_P95_FAN_OUT_S
    report["target_met"] = (
        report["missing"] == 0 and report["unexpected"] == 0 and report["dropped"] == 0
        and report["p95_fan_out_s"] is not None and report["p95_fan_out_s"] < TARGET_P95_FAN_OUT_S
    )
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))
