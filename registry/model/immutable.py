"""Harbor's tag immutability rules: a tag matching a project's enabled rule cannot be moved or deleted."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.model import doublestar
from registry.model.policy import Refused
from registry.model.tables import ImmutableRule, Project

DECORATIONS = {"repo": ("repoMatches", "repoExcludes"), "tag": ("matches", "excludes")}


def _selects(pattern: str, decoration: str, text: str) -> bool:
    hit = doublestar.match(pattern, text)
    return not hit if decoration.endswith("xcludes") else hit


def rule_covers(rule: ImmutableRule, repository: str, tag: str) -> bool:
    """Whether an enabled `rule` covers `tag` in `repository` (the name within its project, as Harbor matches)."""
    return not rule.disabled and _selects(rule.repo_pattern, rule.repo_decoration, repository) \
        and _selects(rule.tag_pattern, rule.tag_decoration, tag)


def rules(s: Session, project_id: int) -> list[ImmutableRule]:
    """A project's rules by priority."""
    return list(s.scalars(select(ImmutableRule).where(ImmutableRule.project_id == project_id)
                          .order_by(ImmutableRule.priority, ImmutableRule.id)))


def is_immutable(s: Session, project: Project, repository: str, tag: str) -> bool:
    """Whether `repository:tag` (the full repository name) is immutable by one of its project's rules."""
    inner = repository.partition("/")[2]
    return any(rule_covers(rule, inner, tag) for rule in rules(s, project.id))


def refuse(repository: str, tag: str) -> Refused:
    """Harbor's refusal of a change to an immutable tag (412)."""
    return Refused(412, "DENIED", f"Failed to process request due to '{repository}:{tag}' configured as immutable.")


def save_rule(s: Session, project_id: int, rule_id: int | None, *, disabled: bool, priority: int, repo_pattern: str,
              repo_decoration: str, tag_pattern: str, tag_decoration: str) -> ImmutableRule:
    """Create (rule_id None) or replace a project's rule; ValueError on a bad pattern or decoration, LookupError
    when the rule is not the project's."""
    doublestar.check(repo_pattern)
    doublestar.check(tag_pattern)
    if repo_decoration not in DECORATIONS["repo"] or tag_decoration not in DECORATIONS["tag"]:
        raise ValueError("decorations: repoMatches or repoExcludes, matches or excludes")
    if rule_id is None:
        rule = ImmutableRule(project_id=project_id)
        s.add(rule)
    else:
        found = s.get(ImmutableRule, rule_id)
        if found is None or found.project_id != project_id:
            raise LookupError(f"immutable rule {rule_id} not found")
        rule = found
    rule.disabled, rule.priority = disabled, priority
    rule.repo_pattern, rule.repo_decoration = repo_pattern, repo_decoration
    rule.tag_pattern, rule.tag_decoration = tag_pattern, tag_decoration
    s.flush()
    return rule


def delete_rule(s: Session, project_id: int, rule_id: int) -> None:
    """Remove a project's rule; LookupError when it is not the project's."""
    rule = s.get(ImmutableRule, rule_id)
    if rule is None or rule.project_id != project_id:
        raise LookupError(f"immutable rule {rule_id} not found")
    s.delete(rule)
