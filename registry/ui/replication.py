"""The system admins' replication page: endpoints, policies with a "Replicate" button, and the latest runs (what
they are made with is the REST API's: /registries, /replication/policies)."""

from __future__ import annotations

from sqlalchemy import func, select

from registry.api.common import needs
from registry.model import replication
from registry.model.tables import ReplicationExecution, ReplicationPolicy, ReplicationRegistry
from registry.ui.common import bp, db, done, page_of, principal, render


@bp.get("/replication")
@needs("sysadmin")
def replication_page():
    with db().session() as s:
        endpoints = list(s.scalars(select(ReplicationRegistry).order_by(ReplicationRegistry.name)))
        policies = list(s.scalars(select(ReplicationPolicy).order_by(ReplicationPolicy.name)))
        page = page_of(s, select(ReplicationExecution).order_by(ReplicationExecution.id.desc()),
                       select(func.count(ReplicationExecution.id)))
    counts = replication.counts(db(), [e.id for (e,) in page.items])
    names = {e.id: e.name for e in endpoints}
    return render("replication.html", endpoints=endpoints, policies=policies, page=page, counts=counts,
                  names=names, policy_names={p.id: p.name for p in policies})


@bp.post("/replication/policies/<int:policy_id>/run")
@needs("sysadmin")
def run_replication(policy_id: int):
    """Queue a run of the policy for the worker, as POST /api/v2.0/replication/executions does."""
    from registry.replication import engine
    who = principal()
    replication.start_execution(db(), policy_id, "manual", who.name if who else "")
    engine.wake(db())
    return done("ui.replication_page", "replication-started")
