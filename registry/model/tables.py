"""The registry product's metadata as SQLAlchemy tables: people, projects, artifacts, policies, events."""

from __future__ import annotations

import time

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> float:
    """Seconds since the epoch: every timestamp column holds these (UTC, sub-second)."""
    return time.time()


class Base(DeclarativeBase):
    """The declarative base of every table (Alembic's target metadata)."""


class User(Base):
    """A local user; sysadmins may do anything. `source` is "local" or "htpasswd" (imported)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(255), default="")
    realname: Mapped[str] = mapped_column(String(255), default="")
    comment: Mapped[str] = mapped_column(String(1024), default="")
    password_hash: Mapped[str] = mapped_column(String(255))  # bcrypt
    sysadmin: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(32), default="local")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class Project(Base):
    """A project: the first path component of its repositories' names."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_bytes: Mapped[int] = mapped_column(BigInteger, default=-1)  # -1: unlimited, as Harbor
    content_trust: Mapped[bool] = mapped_column(Boolean, default=False)  # refuse pulls without a signature
    auto_delete_untagged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)
    members: Mapped[list[Member]] = relationship(back_populates="project", cascade="all, delete-orphan")


class Member(Base):
    """A user's role in a project (role ids as Harbor's: registry.model.roles)."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class Robot(Base):
    """A robot account: `robot$<project>+<name>` (project level) or `robot$<name>` (system level).

    `permissions` is Harbor's list: [{"kind": "project", "namespace": "<project>|*",
    "access": [{"resource": "repository", "action": "pull"}, ...]}]."""

    __tablename__ = "robots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # the full login name
    description: Mapped[str] = mapped_column(String(1024), default="")
    secret_hash: Mapped[str] = mapped_column(String(255))  # bcrypt; the secret is shown once
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), nullable=True)
    permissions: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[float] = mapped_column(Float, default=-1)  # -1: never
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    creator: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class Repository(Base):
    """A repository (full name `<project>/<rest>`) as the metadata knows it."""

    __tablename__ = "repositories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class Artifact(Base):
    """A manifest or index in a repository; `size` is the manifest plus what it references."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("repository_id", "digest"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(255))  # the manifest's media type
    artifact_type: Mapped[str] = mapped_column(String(255), default="")  # artifactType or the config's type
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    subject: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)  # referrers' subject
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # os, architecture, created, labels, layers, ...
    push_time: Mapped[float] = mapped_column(Float, default=now)
    pull_time: Mapped[float] = mapped_column(Float, default=0)


class Tag(Base):
    """A tag pointing at an artifact."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    push_time: Mapped[float] = mapped_column(Float, default=now)
    pull_time: Mapped[float] = mapped_column(Float, default=0)


# An artifact's tags in the pages' order, newest push first: a page of an artifact's 10,000 tags reads the page's
# rows from the index instead of sorting them all.
Index("ix_tags_artifact_recent", Tag.artifact_id, Tag.push_time.desc(), Tag.name)


class ProjectBlob(Base):
    """A blob counted in a project's storage usage: shared blobs count once per project, as Harbor does."""

    __tablename__ = "project_blobs"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class ImmutableRule(Base):
    """A tag immutability rule: tags matching both selectors (doublestar patterns) cannot be overwritten or deleted."""

    __tablename__ = "immutable_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    repo_pattern: Mapped[str] = mapped_column(String(255), default="**")
    repo_decoration: Mapped[str] = mapped_column(String(32), default="repoMatches")  # or repoExcludes
    tag_pattern: Mapped[str] = mapped_column(String(255), default="**")
    tag_decoration: Mapped[str] = mapped_column(String(32), default="matches")  # or excludes


class RetentionPolicy(Base):
    """A project's tag retention policy: Harbor's rules list (OR-ed) and an optional cron schedule."""

    __tablename__ = "retention_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    rules: Mapped[list] = mapped_column(JSON, default=list)
    schedule: Mapped[str] = mapped_column(String(255), default="")  # cron; "" means on demand only
    last_run: Mapped[float] = mapped_column(Float, default=0)


class RetentionExecution(Base):
    """One run of a retention policy, with what it kept and removed."""

    __tablename__ = "retention_executions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("retention_policies.id", ondelete="CASCADE"), index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger: Mapped[str] = mapped_column(String(32), default="MANUAL")  # or SCHEDULE
    status: Mapped[str] = mapped_column(String(32), default="Running")  # Succeed, Failed
    results: Mapped[list] = mapped_column(JSON, default=list)  # [{repository, tag, digest, retained}]
    start_time: Mapped[float] = mapped_column(Float, default=now)
    end_time: Mapped[float] = mapped_column(Float, default=0)


class WebhookPolicy(Base):
    """A project's webhook: event types and targets [{type, address, auth_header, secret, payload_format, ...}]."""

    __tablename__ = "webhook_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    targets: Mapped[list] = mapped_column(JSON, default=list)
    creator: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class WebhookDelivery(Base):
    """One delivery of one event to one target, retried with backoff until it succeeds or gives up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("webhook_policies.id", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[str] = mapped_column(Text)  # the exact body sent (and signed)
    status: Mapped[str] = mapped_column(String(32), default="Pending")  # Success, Error (given up)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(1024), default="")
    next_attempt: Mapped[float] = mapped_column(Float, default=now)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class AuditLog(Base):
    """Who did what to which resource, from where."""

    __tablename__ = "audit_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    op_time: Mapped[float] = mapped_column(Float, default=now, index=True)
    username: Mapped[str] = mapped_column(String(255), default="")
    operation: Mapped[str] = mapped_column(String(32))  # create, delete, pull, push, update, login, ...
    resource_type: Mapped[str] = mapped_column(String(32))  # artifact, repository, project, user, robot, ...
    resource: Mapped[str] = mapped_column(String(1024))  # e.g. "test/app:1" or "test/app@sha256:..."
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")


class Setting(Base):
    """A system setting by key (e.g. the UI session key)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LoginFailure(Base):
    """Failed Basic logins per (username, remote address), in the database so every worker and replica sees them."""

    __tablename__ = "login_failures"
    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    remote_addr: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[float] = mapped_column(Float, default=now)


class ArtifactBlob(Base):
    """What an artifact references (config, layers, its own manifest, an index's children): a blob leaves its
    project's quota usage when no artifact of the project references it any more (h-artifacts)."""

    __tablename__ = "artifact_blobs"
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class WebSession(Base):
    """A signed-in browser session: the cookie's token is never stored, only its SHA-256 (the primary key)."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    last_seen: Mapped[float] = mapped_column(Float, default=now)  # idle expiry counts from here
    expires_at: Mapped[float] = mapped_column(Float)  # absolute expiry


class ReplicationRegistry(Base):
    """A remote registry replication copies to or from (Harbor's registry endpoint); the secret is encrypted."""

    __tablename__ = "replication_registries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(32), default="docker-registry")  # or "harbor", "dockyard"
    url: Mapped[str] = mapped_column(String(2048))
    insecure: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(1024), default="")
    access_key: Mapped[str] = mapped_column(String(255), default="")
    access_secret: Mapped[str] = mapped_column(Text, default="")  # Fernet token under the root's key file
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class ReplicationPolicy(Base):
    """A replication rule: exactly one of src/dest is a remote registry (None: this registry), its filters,
    trigger ({"type": manual|scheduled|event_based, "trigger_settings": {"cron": ...}}) and options."""

    __tablename__ = "replication_policies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(String(1024), default="")
    src_registry_id: Mapped[int | None] = mapped_column(ForeignKey("replication_registries.id"), nullable=True)
    dest_registry_id: Mapped[int | None] = mapped_column(ForeignKey("replication_registries.id"), nullable=True)
    dest_namespace: Mapped[str] = mapped_column(String(255), default="")
    dest_namespace_replace_count: Mapped[int] = mapped_column(Integer, default=-1)
    filters: Mapped[list] = mapped_column(JSON, default=list)
    trigger: Mapped[dict] = mapped_column(JSON, default=dict)
    deletion: Mapped[bool] = mapped_column(Boolean, default=False)
    override: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run: Mapped[float] = mapped_column(Float, default=now)  # the schedule's claim (as retention's)
    creator: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class ReplicationExecution(Base):
    """One run of a policy: Pending until a worker claims it, then InProgress, Succeed, Failed or Stopped.
    `scope` narrows an event-based run to the pushed or deleted artifact."""

    __tablename__ = "replication_executions"
    __table_args__ = (Index("ix_replication_executions_status", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("replication_policies.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(32), default="manual")  # scheduled, event_based
    status: Mapped[str] = mapped_column(String(32), default="Pending")
    status_text: Mapped[str] = mapped_column(String(1024), default="")
    scope: Mapped[dict] = mapped_column(JSON, default=dict)
    operator: Mapped[str] = mapped_column(String(255), default="")
    lease: Mapped[float] = mapped_column(Float, default=0)  # a worker that died holding it frees it after this
    start_time: Mapped[float] = mapped_column(Float, default=now)
    end_time: Mapped[float] = mapped_column(Float, default=0)


class ReplicationTask(Base):
    """One artifact of a run: copied (or deleted) from src to dst, with its attempts and log."""

    __tablename__ = "replication_tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("replication_executions.id", ondelete="CASCADE"),
                                              index=True)
    resource_type: Mapped[str] = mapped_column(String(32), default="image")
    operation: Mapped[str] = mapped_column(String(32), default="copy")  # or deletion
    src_resource: Mapped[str] = mapped_column(String(1024))
    dst_resource: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32), default="Pending")  # InProgress, Succeed, Failed, Stopped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    log: Mapped[str] = mapped_column(Text, default="")
    start_time: Mapped[float] = mapped_column(Float, default=now)
    end_time: Mapped[float] = mapped_column(Float, default=0)
