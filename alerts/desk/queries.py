"""Alerts as the security desk shows them, and the actions taken on them.

Every read takes the signed-in ``Principal`` and filters on its stores in SQL: an alert of another store is
simply not found, exactly like an unknown one (the pages and the API answer 404 for both).  Every action is
one transaction holding the alert's new state, its ``alert_events`` row (the live feed) and its audit row,
applied only if the alert still has the version the person was looking at: when two guards act at once the
second is told who acted first and nothing is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alerts.desk.audit import AuditAction, record_for
from alerts.desk.roles import Principal
from common.db import Database
from common.models import Alert, AlertEvent, Camera, ClipResult, Store
from common.schemas import AlertEventKind, AlertKind, AlertStatus, Verdict, utc_now

NOTE_MAX_CHARS = 2000


class AlertNotFound(LookupError):
    """No such alert, or not one of the stores this person sees (the same answer, on purpose)."""


class ActionNotAllowed(PermissionError):
    """This role may not take this action (a guard reopening), or the alert is not in a state that allows it."""


class _LostRace(Exception):
    """Another request updated the alert between our read and our write (the transaction is rolled back)."""


_DONE = {"acknowledged": "acknowledged", "reopened": "reopened", "resolved": "resolved",
         "evidence_held": "put a hold on", "evidence_released": "released the hold on"}


class ActionConflict(Exception):
    """Someone else acted on the alert since this person loaded it: ``current`` is how it stands now, and
    ``actor``/``event`` the last thing done to it (from its history, so a reopen or resolve is named right)."""

    def __init__(self, current: AlertView, actor: str | None, event: str | None) -> None:
        self.current = current
        self.actor = actor
        self.event = event
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """What the person who came second is told (the page and the API alike)."""
        who = self.actor or "someone else"
        done = f" {_DONE.get(self.event or '', 'acted on')} it"
        now = self.current.status + (f" as “{self.current.verdict_label}”" if self.current.verdict else "")
        return f"{who}{done} first: the alert is {now}. Nothing was changed."


@dataclass(frozen=True)
class AlertFilter:
    store_id: str | None = None
    camera_id: str | None = None
    kind: str | None = None
    status: str | None = None

    def query_string(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass(frozen=True)
class AlertView:
    """One alert with what a guard needs to judge it; ``as_json`` is the API's and the live feed's shape."""

    id: int
    alert_id: str
    kind: str
    kind_label: str
    store_id: str
    store_name: str
    camera_id: str
    camera_name: str
    raised_at: datetime
    probability: float | None
    clip_ids: tuple[str, ...]
    source_start_s: float | None
    source_end_s: float | None
    message: str
    status: str
    verdict: str | None
    verdict_label: str
    note: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    version: int
    has_snapshot: bool
    has_video: bool
    video_pending: bool  # a suspicious-activity alert whose video the video maker has not settled yet
    evidence_hold: bool = False
    hold_by: str | None = None
    hold_at: datetime | None = None
    evidence_deleted_at: datetime | None = None  # the retention janitor deleted the files; the row stays

    @property
    def is_open(self) -> bool:
        return self.status == AlertStatus.OPEN

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("raised_at", "acknowledged_at", "resolved_at", "hold_at", "evidence_deleted_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["clip_ids"] = list(self.clip_ids)
        return data


@dataclass(frozen=True)
class ClipPoint:
    """One classified clip of the alert's camera, for the probability chart on the alert page."""

    captured_at: datetime
    probability: float
    threshold: float
    in_alert: bool


@dataclass(frozen=True)
class StoreCount:
    store_id: str
    name: str
    open_alerts: int


def _view(alert: Alert, store_name: str | None, camera_name: str | None) -> AlertView:
    return AlertView(
        id=alert.id,
        alert_id=alert.alert_id,
        kind=alert.kind,
        kind_label=AlertKind.label_of(alert.kind),
        store_id=alert.store_id,
        store_name=store_name or alert.store_id,
        camera_id=alert.camera_id,
        camera_name=camera_name or alert.camera_id,
        raised_at=alert.raised_at,
        probability=alert.probability,
        clip_ids=tuple(alert.clip_ids or ()),
        source_start_s=alert.source_start_s,
        source_end_s=alert.source_end_s,
        message=alert.message,
        status=alert.status,
        verdict=alert.verdict,
        verdict_label=Verdict.label_of(alert.verdict) if alert.verdict else "",
        note=alert.note,
        acknowledged_by=alert.acknowledged_by,
        acknowledged_at=alert.acknowledged_at,
        resolved_by=alert.resolved_by,
        resolved_at=alert.resolved_at,
        version=alert.version,
        has_snapshot=bool(alert.evidence_path) and alert.evidence_deleted_at is None,
        has_video=bool(alert.evidence_video_path) and alert.evidence_deleted_at is None,
        video_pending=(alert.kind == AlertKind.SUSPICIOUS_ACTIVITY.value and not alert.evidence_video_path
                       and alert.evidence_video_settled_at is None and alert.evidence_deleted_at is None),
        evidence_hold=bool(alert.evidence_hold),
        hold_by=alert.hold_by,
        hold_at=alert.hold_at,
        evidence_deleted_at=alert.evidence_deleted_at,
    )


def _scoped(statement: Any, principal: Principal) -> Any:
    stores = principal.store_filter()
    return statement if stores is None else statement.where(Alert.store_id.in_(sorted(stores)))


def _with_names() -> Any:
    return (
        select(Alert, Store.name, Camera.name)
        .outerjoin(Store, Store.id == Alert.store_id)
        .outerjoin(Camera, Camera.id == Alert.camera_id)
    )


class DeskQueries:
    """The desk's reads and actions over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads -----------------------------------------------------------------------------------
    def list_alerts(
        self, principal: Principal, where: AlertFilter = AlertFilter(), *, limit: int = 100,
        before_id: int | None = None,
    ) -> list[AlertView]:
        statement = _scoped(_with_names(), principal)
        if where.store_id:
            statement = statement.where(Alert.store_id == where.store_id)
        if where.camera_id:
            statement = statement.where(Alert.camera_id == where.camera_id)
        if where.kind:
            statement = statement.where(Alert.kind == where.kind)
        if where.status:
            statement = statement.where(Alert.status == where.status)
        if before_id is not None:
            statement = statement.where(Alert.id < before_id)
        statement = statement.order_by(Alert.id.desc()).limit(max(1, min(limit, 500)))
        with self.db.session() as session:
            return [_view(a, s, c) for a, s, c in session.execute(statement).all()]

    def alert(self, principal: Principal, alert_id: str) -> AlertView:
        with self.db.session() as session:
            return self._load(session, principal, alert_id)

    def _load(self, session: Session, principal: Principal, alert_id: str) -> AlertView:
        statement = _scoped(_with_names(), principal).where(Alert.alert_id == alert_id)
        row = session.execute(statement).first()
        if row is None:
            raise AlertNotFound(alert_id)
        return _view(*row)

    def evidence_paths(self, principal: Principal, alert_id: str) -> tuple[str | None, str | None, str]:
        """(snapshot, video, store id) of a visible alert, paths as the pipeline stored them; AlertNotFound
        otherwise."""
        statement = _scoped(select(Alert.evidence_path, Alert.evidence_video_path, Alert.store_id), principal)
        with self.db.session() as session:
            row = session.execute(statement.where(Alert.alert_id == alert_id)).first()
        if row is None:
            raise AlertNotFound(alert_id)
        return row[0], row[1], row[2]

    def store_counts(self, principal: Principal) -> list[StoreCount]:
        """Every store this person sees, with its open alerts (0 included)."""
        stores = principal.store_filter()
        with self.db.session() as session:
            statement = select(Store.id, Store.name).order_by(Store.name)
            if stores is not None:
                statement = statement.where(Store.id.in_(sorted(stores)))
            named = session.execute(statement).all()
            counts = dict(session.execute(
                _scoped(select(Alert.store_id, func.count()), principal)
                .where(Alert.status == AlertStatus.OPEN.value).group_by(Alert.store_id)
            ).all())
        return [StoreCount(store_id, name, int(counts.get(store_id, 0))) for store_id, name in named]

    def cameras(self, principal: Principal) -> list[tuple[str, str, str]]:
        """(camera id, name, store id) of every camera this person sees."""
        stores = principal.store_filter()
        statement = select(Camera.id, Camera.name, Camera.store_id).order_by(Camera.store_id, Camera.name)
        if stores is not None:
            statement = statement.where(Camera.store_id.in_(sorted(stores)))
        with self.db.session() as session:
            return [(c, n, s) for c, n, s in session.execute(statement).all()]

    def clip_timeline(
        self, view: AlertView, *, around: timedelta = timedelta(minutes=2), limit: int = 400
    ) -> list[ClipPoint]:
        """The alert camera's clips from ``around`` before the alert to ``around`` after it, oldest first."""
        in_alert = set(view.clip_ids)
        with self.db.session() as session:
            if in_alert:
                centre = session.scalar(
                    select(func.max(ClipResult.captured_at)).where(ClipResult.clip_id.in_(sorted(in_alert)))
                )
            else:
                centre = None
            centre = centre or view.raised_at
            rows = session.execute(
                select(ClipResult.clip_id, ClipResult.captured_at, ClipResult.probability, ClipResult.threshold)
                .where(ClipResult.camera_id == view.camera_id, ClipResult.store_id == view.store_id,
                       ClipResult.captured_at >= centre - around, ClipResult.captured_at <= centre + around)
                .order_by(ClipResult.captured_at).limit(limit)
            ).all()
        return [ClipPoint(at, probability, threshold, clip_id in in_alert)
                for clip_id, at, probability, threshold in rows]

    def last_event_id(self, stores: frozenset[str] | None) -> int:
        """The newest alert event in ``stores`` (None = all): where a freshly loaded page's live feed starts."""
        statement = select(func.max(AlertEvent.id))
        if stores is not None:
            statement = statement.where(AlertEvent.store_id.in_(sorted(stores)))
        with self.db.session() as session:
            return int(session.scalar(statement) or 0)

    def events(
        self, *, after_id: int = 0, stores: frozenset[str] | None = None, also_ids: Sequence[int] = (),
        limit: int = 500,
    ) -> list[tuple[int, str, AlertView]]:
        """(event id, event, alert as it stands now) for events after ``after_id`` (and the ids in
        ``also_ids``), oldest first, in ``stores`` (None = all)."""
        condition = AlertEvent.id > after_id
        if also_ids:
            condition = condition | AlertEvent.id.in_(sorted(also_ids))
        statement = (
            select(AlertEvent.id, AlertEvent.event, Alert, Store.name, Camera.name)
            .join(Alert, Alert.alert_id == AlertEvent.alert_id)
            .outerjoin(Store, Store.id == Alert.store_id)
            .outerjoin(Camera, Camera.id == Alert.camera_id)
            .where(condition).order_by(AlertEvent.id).limit(limit)
        )
        if stores is not None:
            statement = statement.where(AlertEvent.store_id.in_(sorted(stores)))
        with self.db.session() as session:
            return [(event_id, event, _view(a, s, c)) for event_id, event, a, s, c in session.execute(statement).all()]

    def event_ids(self, *, after_id: int, upto: int) -> list[int]:
        with self.db.session() as session:
            return list(session.scalars(
                select(AlertEvent.id).where(AlertEvent.id > after_id, AlertEvent.id <= upto)))

    def history(self, principal: Principal, alert_id: str) -> list[tuple[datetime, str, str | None]]:
        """(when, event, who) of a visible alert, oldest first."""
        statement = _scoped(select(AlertEvent.at, AlertEvent.event, AlertEvent.actor)
                            .join(Alert, Alert.alert_id == AlertEvent.alert_id), principal)
        with self.db.session() as session:
            rows = session.execute(statement.where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)).all()
        return [(at, event, actor) for at, event, actor in rows]

    def open_counts(self, store_ids: Sequence[str]) -> dict[str, int]:
        if not store_ids:
            return {}
        with self.db.session() as session:
            counts = dict(session.execute(
                select(Alert.store_id, func.count()).where(
                    Alert.store_id.in_(sorted(set(store_ids))), Alert.status == AlertStatus.OPEN.value
                ).group_by(Alert.store_id)
            ).all())
        return {store_id: int(counts.get(store_id, 0)) for store_id in store_ids}

    # -- actions ---------------------------------------------------------------------------------
    def acknowledge(
        self, principal: Principal, alert_id: str, verdict: Verdict | str, *, version: int,
        note: str | None = None, address: str = "",
    ) -> AlertView:
        """open → acknowledged, with a verdict and an optional note."""
        verdict = Verdict(verdict)
        if not principal.can_acknowledge:
            raise ActionNotAllowed("this role cannot acknowledge alerts")
        note = (note or "").strip()[:NOTE_MAX_CHARS] or None
        now = utc_now()
        return self._act(
            principal, alert_id, version, address=address, allowed_from=(AlertStatus.OPEN,),
            values={"status": AlertStatus.ACKNOWLEDGED.value, "verdict": verdict.value, "note": note,
                    "acknowledged_by": principal.username, "acknowledged_at": now},
            event=AlertEventKind.ACKNOWLEDGED, audit=AuditAction.ALERT_ACKNOWLEDGED,
            detail=f"verdict {verdict.value}" + (f"; note: {note}" if note else ""), now=now,
        )

    def reopen(self, principal: Principal, alert_id: str, *, version: int, address: str = "") -> AlertView:
        """acknowledged or resolved → open (managers and admins); the earlier verdict stays in the audit log."""
        if not principal.can_reopen:
            raise ActionNotAllowed("only a manager or an admin can reopen an alert")
        return self._act(
            principal, alert_id, version, address=address,
            allowed_from=(AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED),
            values={"status": AlertStatus.OPEN.value, "verdict": None, "note": None, "acknowledged_by": None,
                    "acknowledged_at": None, "resolved_by": None, "resolved_at": None},
            event=AlertEventKind.REOPENED, audit=AuditAction.ALERT_REOPENED, detail="", now=utc_now(),
            describe_previous=True,
        )

    def resolve(self, principal: Principal, alert_id: str, *, version: int, address: str = "") -> AlertView:
        """acknowledged → resolved (managers and admins): the case is closed."""
        if not principal.can_reopen:
            raise ActionNotAllowed("only a manager or an admin can resolve an alert")
        now = utc_now()
        return self._act(
            principal, alert_id, version, address=address, allowed_from=(AlertStatus.ACKNOWLEDGED,),
            values={"status": AlertStatus.RESOLVED.value, "resolved_by": principal.username, "resolved_at": now},
            event=AlertEventKind.RESOLVED, audit=AuditAction.ALERT_RESOLVED, detail="", now=now,
        )

    def hold(self, principal: Principal, alert_id: str, *, version: int, address: str = "") -> AlertView:
        """Put a hold on the alert's evidence (managers and admins): the janitor never deletes it."""
        if not principal.can_hold_evidence:
            raise ActionNotAllowed("only a manager or an admin can put evidence on hold")

        def holdable(view: AlertView) -> None:
            if view.evidence_hold:
                raise ActionNotAllowed(f"the evidence of alert {alert_id} is already on hold")
            if view.evidence_deleted_at is not None:
                raise ActionNotAllowed(f"the evidence of alert {alert_id} was already deleted by retention")

        now = utc_now()
        return self._act(
            principal, alert_id, version, address=address, allowed_from=tuple(AlertStatus),
            values={"evidence_hold": True, "hold_by": principal.username, "hold_at": now},
            event=AlertEventKind.EVIDENCE_HELD, audit=AuditAction.EVIDENCE_HELD, detail="", now=now,
            precondition=holdable,
        )

    def release(self, principal: Principal, alert_id: str, *, version: int, address: str = "") -> AlertView:
        """Release a hold (managers and admins): retention applies again from the next janitor pass."""
        if not principal.can_hold_evidence:
            raise ActionNotAllowed("only a manager or an admin can release a hold")

        def held(view: AlertView) -> None:
            if not view.evidence_hold:
                raise ActionNotAllowed(f"the evidence of alert {alert_id} is not on hold")

        def describe(view: AlertView) -> str:
            when = view.hold_at.isoformat() if view.hold_at else "?"
            return f"held by {view.hold_by} since {when}"

        return self._act(
            principal, alert_id, version, address=address, allowed_from=tuple(AlertStatus),
            values={"evidence_hold": False, "hold_by": None, "hold_at": None},
            event=AlertEventKind.EVIDENCE_RELEASED, audit=AuditAction.EVIDENCE_RELEASED, detail="", now=utc_now(),
            precondition=held, describe=describe,
        )

    def _act(
        self, principal: Principal, alert_id: str, version: int, *, address: str,
        allowed_from: Sequence[AlertStatus], values: dict[str, Any], event: AlertEventKind,
        audit: AuditAction, detail: str, now: datetime, describe_previous: bool = False,
        precondition: Callable[[AlertView], None] | None = None, describe: Callable[[AlertView], str] | None = None,
    ) -> AlertView:
        try:
            return self._apply(principal, alert_id, version, address=address, allowed_from=allowed_from,
                               values=values, event=event, audit=audit, detail=detail, now=now,
                               describe_previous=describe_previous, precondition=precondition,
                               describe=describe)
        except _LostRace:
            raise self._conflict(principal, alert_id) from None

    def _conflict(self, principal: Principal, alert_id: str) -> ActionConflict:
        current = self.alert(principal, alert_id)
        with self.db.session() as session:
            last = session.execute(
                select(AlertEvent.actor, AlertEvent.event).where(AlertEvent.alert_id == alert_id)
                .order_by(AlertEvent.id.desc()).limit(1)
            ).first()
        actor, event = (last[0], last[1]) if last is not None else (None, None)
        return ActionConflict(current, actor, event if event != AlertEventKind.RAISED else None)

    def _apply(
        self, principal: Principal, alert_id: str, version: int, *, address: str,
        allowed_from: Sequence[AlertStatus], values: dict[str, Any], event: AlertEventKind,
        audit: AuditAction, detail: str, now: datetime, describe_previous: bool,
        precondition: Callable[[AlertView], None] | None, describe: Callable[[AlertView], str] | None,
    ) -> AlertView:
        with self.db.session() as session:
            before = self._load(session, principal, alert_id)  # AlertNotFound outside this person's stores
            if before.version != version:
                raise _LostRace
            if before.status not in {s.value for s in allowed_from}:
                raise ActionNotAllowed(f"alert {alert_id} is {before.status}")
            if precondition is not None:
                precondition(before)
            # The version in the WHERE clause is what makes this safe between processes and replicas: of two
            # requests that both read version N, exactly one updates a row.  A hold also requires the evidence
            # not to be deleted yet: the janitor marks an alert without bumping its version.
            condition = [Alert.alert_id == alert_id, Alert.version == version]
            if event is AlertEventKind.EVIDENCE_HELD:
                condition.append(Alert.evidence_deleted_at.is_(None))
            changed: int = session.execute(  # type: ignore[attr-defined]
                update(Alert).where(*condition).values(**values, version=Alert.version + 1)
            ).rowcount
            if changed != 1:
                raise _LostRace
            session.add(AlertEvent(alert_id=alert_id, store_id=before.store_id, event=event.value, at=now,
                                   actor=principal.username))
            if describe_previous and before.verdict:
                detail = f"was {before.status} with verdict {before.verdict} by {before.acknowledged_by}"
            if describe is not None:
                detail = describe(before)
            record_for(session, audit, principal, store_id=before.store_id, target_id=alert_id,
                       address=address, detail=detail, at=now)
            session.flush()
            return self._load(session, principal, alert_id)
