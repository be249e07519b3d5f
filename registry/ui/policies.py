"""A project's policies (visibility, content trust, quota, immutability, retention) and its webhooks."""

from __future__ import annotations

from flask import request
from sqlalchemy import func, select

from registry import guard
from registry.api.common import ApiError, needs
from registry.model import quota
from registry.model.tables import (
    AuditLog,
    ImmutableRule,
    RetentionExecution,
    RetentionPolicy,
    WebhookDelivery,
    WebhookPolicy,
)
from registry.ui.common import bp, db, done, form, gib, model_errors, page_of, principal, project, registry, render
from registry.ui.projects import project_context

RETENTION_TEMPLATES = {"latestPushedK": "keep the most recently pushed N artifacts",
                       "nDaysSinceLastPush": "keep artifacts pushed within the last N days",
                       "always": "keep everything"}
WEBHOOK_EVENTS = ("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED", "TAG_RETENTION")


@bp.get("/projects/<project_name_or_id>/policies")
@needs("project:read")
def policies(project_name_or_id: str):
    with db().session() as s:
        ctx = project_context()
        proj = ctx["project"]
        rules = list(s.scalars(select(ImmutableRule).where(ImmutableRule.project_id == proj.id)
                               .order_by(ImmutableRule.priority, ImmutableRule.id)))
        retention = s.scalar(select(RetentionPolicy).where(RetentionPolicy.project_id == proj.id))
        runs = list(s.scalars(select(RetentionExecution).where(RetentionExecution.policy_id == retention.id)
                              .order_by(RetentionExecution.id.desc()).limit(10))) if retention else []
        used = quota.usage(s, proj.id)
        refused = s.scalar(select(AuditLog).where(AuditLog.project_id == proj.id, AuditLog.operation == "quota_exceed")
                           .order_by(AuditLog.op_time.desc()).limit(1))
    return render("policies.html", rules=rules, retention=retention, runs=runs, used=used, refused=refused,
                  templates=RETENTION_TEMPLATES, tab="policies", **ctx)


@bp.post("/projects/<project_name_or_id>/settings")
@needs("project:policies")
def update_settings(project_name_or_id: str):
    """Visibility, content trust and auto-deletion of untagged artifacts (Harbor's project metadata)."""
    from registry.model.projects import update_project
    pid = guard.project().id
    update_project(db(), pid, {key: "true" if request.form.get(key) == "on" else "false"
                               for key in ("public", "enable_content_trust", "auto_delete_untagged")})
    return done("ui.policies", "project-updated", project_name_or_id=pid)


@bp.post("/projects/<project_name_or_id>/quota")
@needs("sysadmin")
def set_quota(project_name_or_id: str):
    """A project's storage limit, which only a system admin sets (as in Harbor)."""
    from registry.model.projects import update_project
    with db().session() as s:
        pid = project(s, project_name_or_id).id
    update_project(db(), pid, storage_limit=gib(form("storage_limit"), "quota"))
    return done("ui.policies", "quota-set", project_name_or_id=pid)


@bp.post("/projects/<project_name_or_id>/immutable")
@needs("project:policies")
def add_immutable_rule(project_name_or_id: str):
    from registry.model.immutable import save_rule
    proj = guard.project()
    with db().session() as s, model_errors():
        save_rule(s, proj.id, None, disabled=False, priority=0, repo_pattern=form("repo_pattern", 255) or "**",
                  repo_decoration=form("repo_decoration", 32) or "repoMatches",
                  tag_pattern=form("tag_pattern", 255) or "**", tag_decoration=form("tag_decoration", 32) or "matches")
    return done("ui.policies", "rule-added", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/immutable/<int:rule_id>/delete")
@needs("project:policies")
def delete_immutable_rule(project_name_or_id: str, rule_id: int):
    from registry.model.immutable import delete_rule
    proj = guard.project()
    with db().session() as s, model_errors():
        delete_rule(s, proj.id, rule_id)
    return done("ui.policies", "rule-deleted", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/retention")
@needs("project:policies")
def save_retention(project_name_or_id: str):
    """Add one rule to the project's retention policy (or remove rule `remove`), and set its schedule."""
    from registry.model import retention as model
    proj = guard.project()
    with db().session() as s:
        existing = s.scalar(select(RetentionPolicy).where(RetentionPolicy.project_id == proj.id))
        rules = list(existing.rules) if existing else []
        policy_id = existing.id if existing else None
    remove = form("remove", 9)
    if remove.isdigit():
        rules = [r for i, r in enumerate(rules) if i != int(remove)]
    elif form("template", 64):
        template = form("template", 64)
        rules.append({"action": "retain", "template": template,
                      "params": {template: form("count", 9)} if template != "always" else {},
                      "tag_selectors": [{"kind": "doublestar", "decoration": form("tag_decoration", 32) or "matches",
                                         "pattern": form("tag_pattern", 255) or "**"}],
                      "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                          "pattern": form("repo_pattern", 255) or "**"}]}})
    schedule = form("schedule", 255) if "schedule" in request.form else (existing.schedule if existing else "")
    body = {"algorithm": "or", "rules": rules, "trigger": {"kind": "Schedule", "settings": {"cron": schedule}}}
    with model_errors():
        if policy_id is None:
            model.create_policy(db(), proj.id, body)
        else:
            model.update_policy(db(), policy_id, body)
    return done("ui.policies", "retention-saved", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/retention/run")
@needs("project:policies")
def run_retention(project_name_or_id: str):
    """Run the retention policy now (or as a dry run), waiting for it: the page then shows what it removed."""
    from registry.model import retention as model
    proj = guard.project()
    with db().session() as s:
        policy_id = s.scalar(select(RetentionPolicy.id).where(RetentionPolicy.project_id == proj.id))
    if policy_id is None:
        raise ApiError(404, f"project {proj.name} has no retention policy")
    execution = model.start_execution(db(), policy_id, dry_run=request.form.get("dry_run") == "on")
    if execution is None:
        raise ApiError(404, f"project {proj.name} has no retention policy")
    who = principal()
    model.run_execution(db(), registry().storage, execution, who.name if who else "", registry().config.gc_grace,
                        host=request.host)
    return done("ui.policies", "retention-run", project_name_or_id=proj.id)


@bp.get("/projects/<project_name_or_id>/webhooks")
@needs("project:policies")
def webhooks(project_name_or_id: str):
    """The project's webhooks (secrets and auth headers are never shown) and their delivery log."""
    with db().session() as s:
        ctx = project_context()
        hooks = list(s.scalars(select(WebhookPolicy).where(WebhookPolicy.project_id == ctx["project"].id)
                               .order_by(WebhookPolicy.name)))
        ids = [h.id for h in hooks]
        where = WebhookDelivery.policy_id.in_(ids)
        page = page_of(s, select(WebhookDelivery).where(where).order_by(WebhookDelivery.id.desc()),
                       select(func.count(WebhookDelivery.id)).where(where))
    names = {h.id: h.name for h in hooks}
    return render("webhooks.html", hooks=hooks, names=names, page=page, events=WEBHOOK_EVENTS, tab="webhooks", **ctx)


@bp.post("/projects/<project_name_or_id>/webhooks")
@needs("project:policies")
def create_webhook(project_name_or_id: str):
    from registry.events.webhooks import create_policy
    pid = guard.project().id
    target = {"type": "http", "address": form("address", 2048), "payload_format": form("payload_format", 32)
              or "Default", "skip_cert_verify": False}
    if form("auth_header"):
        target["auth_header"] = form("auth_header")
    if form("secret"):
        target["secret"] = form("secret")
    who = principal()
    with model_errors():
        create_policy(db(), pid, {"name": form("name", 255), "description": form("description"), "enabled": True,
                                  "event_types": [e for e in WEBHOOK_EVENTS if request.form.get(f"event_{e}") == "on"],
                                  "targets": [target]}, who.name if who else "")
    return done("ui.webhooks", "webhook-created", project_name_or_id=pid)


@bp.post("/projects/<project_name_or_id>/webhooks/<int:policy_id>/delete")
@needs("project:policies")
def delete_webhook(project_name_or_id: str, policy_id: int):
    from registry.events.webhooks import delete_policy
    pid = guard.project().id
    if not delete_policy(db(), pid, policy_id):
        raise ApiError(404, f"webhook {policy_id} not found")
    return done("ui.webhooks", "webhook-deleted", project_name_or_id=pid)
