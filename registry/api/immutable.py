"""`/projects/{p}/immutabletagrules`: a project's tag immutability rules in Harbor's rule shape."""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import func, select

from registry.api.common import ApiError, bp, needs, page_response, paging
from registry.api.repositories import PROJECT, project_or_404, registry
from registry.model.tables import ImmutableRule

RULES = PROJECT + "/immutabletagrules"


def rule_json(rule: ImmutableRule) -> dict:
    return {"id": rule.id, "project_id": rule.project_id, "disabled": rule.disabled, "priority": rule.priority,
            "action": "immutable", "template": "immutable_template", "params": {},
            "tag_selectors": [{"kind": "doublestar", "decoration": rule.tag_decoration, "pattern": rule.tag_pattern}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": rule.repo_decoration,
                                                "pattern": rule.repo_pattern}]}}


def _selector(value: object, where: str, default_decoration: str) -> tuple[str, str]:
    """(pattern, decoration) of a one-selector list; ApiError naming the field otherwise."""
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise ApiError(400, f"{where}: a list of one selector {{kind, decoration, pattern}}")
    selector = value[0]
    if selector.get("kind", "doublestar") != "doublestar":
        raise ApiError(400, f"{where}[0].kind: only doublestar")
    pattern, decoration = selector.get("pattern"), selector.get("decoration", default_decoration)
    if not isinstance(pattern, str) or not isinstance(decoration, str):
        raise ApiError(400, f"{where}[0]: pattern and decoration must be strings")
    return pattern, decoration


def _fields(body: object) -> dict:
    """The model's fields from a rule in Harbor's JSON shape."""
    if not isinstance(body, dict):
        raise ApiError(400, "body must be an immutable rule object")
    tag_pattern, tag_decoration = _selector(body.get("tag_selectors"), "tag_selectors", "matches")
    scope = body.get("scope_selectors")
    repo_pattern, repo_decoration = _selector(scope.get("repository") if isinstance(scope, dict) else None,
                                              "scope_selectors.repository", "repoMatches")
    disabled, priority = body.get("disabled", False), body.get("priority", 0)
    if not isinstance(disabled, bool) or not isinstance(priority, int) or isinstance(priority, bool):
        raise ApiError(400, "disabled must be a boolean, priority an integer")
    return {"disabled": disabled, "priority": priority, "repo_pattern": repo_pattern,
            "repo_decoration": repo_decoration, "tag_pattern": tag_pattern, "tag_decoration": tag_decoration}


@bp.get(RULES)
@needs("project:read")
def list_rules(project_name_or_id: str):
    """A page of the project's rules by priority."""
    page = paging()
    with registry().model.session() as s:
        project = project_or_404(s, project_name_or_id)
        query = select(ImmutableRule).where(ImmutableRule.project_id == project.id)
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rules = s.scalars(query.order_by(ImmutableRule.priority, ImmutableRule.id)
                          .offset(page.offset).limit(page.size))
        items = [rule_json(r) for r in rules]
    return page_response(items, total, page)


def _save(project_name_or_id: str, rule_id: int | None):
    from registry.model import immutable
    fields = _fields(request.get_json(silent=True))
    with registry().model.session() as s:
        project = project_or_404(s, project_name_or_id)
        try:
            return immutable.save_rule(s, project.id, rule_id, **fields).id
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        except LookupError as e:
            raise ApiError(404, str(e)) from None


@bp.post(RULES)
@needs("project:policies")
def create_rule(project_name_or_id: str):
    """Add a rule; 201 with its Location."""
    rule_id = _save(project_name_or_id, None)
    resp = jsonify({})
    resp.status_code = 201
    resp.headers["Location"] = f"{request.path}/{rule_id}"
    return resp


@bp.put(RULES + "/<int:rule_id>")
@needs("project:policies")
def update_rule(project_name_or_id: str, rule_id: int):
    """Replace a rule (or just enable/disable it)."""
    _save(project_name_or_id, rule_id)
    return "", 200


@bp.delete(RULES + "/<int:rule_id>")
@needs("project:policies")
def delete_rule(project_name_or_id: str, rule_id: int):
    """Remove a rule."""
    from registry.model import immutable
    with registry().model.session() as s:
        project = project_or_404(s, project_name_or_id)
        try:
            immutable.delete_rule(s, project.id, rule_id)
        except LookupError as e:
            raise ApiError(404, str(e)) from None
    return "", 200
