"""Webhook policies and their deliveries: each queued delivery is claimed through the database by one sender (one
per worker process, started on first use after fork), POSTed with a timeout, signed, and retried with backoff."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from registry import background
from registry.events import EVENT_TYPES, PAYLOAD_FORMATS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.background import Loop
    from registry.model.db import Database
    from registry.model.tables import WebhookDelivery

log = logging.getLogger("registry.webhooks")

MAX_ATTEMPTS = 5
BACKOFF_BASE = 1.0  # seconds before the second attempt; doubled each time after
BACKOFF_MAX = 60.0
TIMEOUT = (5.0, 10.0)  # connect, read: a target that hangs is cut here
# A claimed delivery is reserved this long; a sender that died holding it frees it when the lease runs out.
LEASE = 60.0
RESPONSE_READ_MAX = 4096  # bytes of a target's answer ever read (kept for the log)
POLL = 2.0  # seconds between looks for deliveries other processes queued
BATCH = 8  # deliveries sent at once, so one slow target does not hold the others
SIGNATURE_HEADER = "X-Dockyard-Signature"
MAX_TARGETS = 10


class WebhookError(ValueError):
    """A webhook policy that cannot be stored: the message names the field."""


def validate(body: dict, partial: bool = False) -> dict:
    """A policy's writable fields (Harbor's WebhookPolicy) checked and normalized; WebhookError names the bad one."""
    out: dict = {}
    if "name" in body or not partial:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise WebhookError("name: a non-empty string of at most 255 characters")
        out["name"] = name.strip()
    if "description" in body:
        if not isinstance(body["description"], str) or len(body["description"]) > 1024:
            raise WebhookError("description: a string of at most 1024 characters")
        out["description"] = body["description"]
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise WebhookError("enabled: true or false")
        out["enabled"] = body["enabled"]
    if "event_types" in body or not partial:
        types = body.get("event_types")
        if not isinstance(types, list) or not types:
            raise WebhookError(f"event_types: a non-empty list of {', '.join(EVENT_TYPES)}")
        for i, t in enumerate(types):
            if t not in EVENT_TYPES:
                raise WebhookError(f"event_types[{i}]: unknown event type {str(t)[:64]!r}")
        out["event_types"] = list(dict.fromkeys(types))
    if "targets" in body or not partial:
        targets = body.get("targets")
        if not isinstance(targets, list) or not targets or len(targets) > MAX_TARGETS:
            raise WebhookError(f"targets: a list of 1 to {MAX_TARGETS} targets")
        out["targets"] = [_target(i, t) for i, t in enumerate(targets)]
    return out


def _target(i: int, t: object) -> dict:
    """One target: an http(s) address and its options."""
    where = f"targets[{i}]"
    if not isinstance(t, dict):
        raise WebhookError(f"{where}: an object")
    if t.get("type", "http") != "http":
        raise WebhookError(f"{where}.type: only \"http\" is supported")
    address = t.get("address")
    if not isinstance(address, str) or len(address) > 2048:
        raise WebhookError(f"{where}.address: an http(s) URL")
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise WebhookError(f"{where}.address: invalid URL {address[:100]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c in address for c in " \r\n\t"):
        raise WebhookError(f"{where}.address: an http(s) URL, not {address[:100]!r}")
    fmt = t.get("payload_format") or "Default"
    if fmt not in PAYLOAD_FORMATS:
        raise WebhookError(f"{where}.payload_format: one of {', '.join(PAYLOAD_FORMATS)}")
    out = {"type": "http", "address": address, "payload_format": fmt,
           "skip_cert_verify": bool(t.get("skip_cert_verify", False))}
    for key in ("auth_header", "secret"):
        value = t.get(key) or ""
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\r\n"):
            raise WebhookError(f"{where}.{key}: a single-line string")
        out[key] = value
    return out


def create_policy(db: Database, project_id: int, body: dict, creator: str) -> int:
    """Store a new policy for the project; its id. WebhookError on bad input or a taken name."""
    from registry.model.tables import WebhookPolicy
    fields = validate(body)
    with db.session() as s:
        if s.query(WebhookPolicy).filter_by(project_id=project_id, name=fields["name"]).first() is not None:
            raise WebhookError(f"name: a policy named {fields['name']!r} exists")
        policy = WebhookPolicy(project_id=project_id, creator=creator, **fields)
        s.add(policy)
        s.flush()
        return policy.id


def update_policy(db: Database, project_id: int, policy_id: int, body: dict) -> bool:
    """Change the fields `body` gives; False when the project has no such policy. A target given without a
    `secret` keeps the one its address had (the API never shows secrets, so a read-modify-write keeps them)."""
    from registry.model.tables import WebhookPolicy
    with db.session() as s:
        policy = s.query(WebhookPolicy).filter_by(id=policy_id, project_id=project_id).one_or_none()
        if policy is None:
            return False
        if isinstance(body.get("targets"), list):
            secrets = {t.get("address"): t.get("secret", "") for t in policy.targets or []}
            body = {**body, "targets": [{**t, "secret": secrets.get(t.get("address"), "")}
                                        if isinstance(t, dict) and "secret" not in t else t
                                        for t in body["targets"]]}
        fields = validate(body, partial=True)
        if "name" in fields and fields["name"] != policy.name and s.query(WebhookPolicy).filter_by(
                project_id=project_id, name=fields["name"]).first() is not None:
            raise WebhookError(f"name: a policy named {fields['name']!r} exists")
        for key, value in fields.items():
            setattr(policy, key, value)
        return True


def delete_policy(db: Database, project_id: int, policy_id: int) -> bool:
    """Remove a policy and its delivery log; False when the project has no such policy."""
    from registry.model.tables import WebhookDelivery, WebhookPolicy
    with db.session() as s:
        policy = s.query(WebhookPolicy).filter_by(id=policy_id, project_id=project_id).one_or_none()
        if policy is None:
            return False
        s.query(WebhookDelivery).filter_by(policy_id=policy_id).delete()
        s.delete(policy)
        return True


def queue(s: Session, policy_id: int, event_type: str, address: str, body: str) -> None:
    """Queue one delivery in the caller's transaction."""
    from registry.model.tables import WebhookDelivery
    s.add(WebhookDelivery(policy_id=policy_id, event_type=event_type, address=address, payload=body,
                          status="Pending", next_attempt=time.time()))


def post(target: dict, body: str) -> str | None:
    """POST `body` to `target` once: None on a 2xx answer, else what went wrong (one line)."""
    import requests
    data = body.encode()
    content_type = "application/cloudevents+json" if target.get("payload_format") == "CloudEvents" \
        else "application/json"
    headers = {"Content-Type": content_type, "User-Agent": "dockyard-webhook"}
    if target.get("auth_header"):
        headers["Authorization"] = target["auth_header"]
    if target.get("secret"):
        headers[SIGNATURE_HEADER] = "sha256=" + signature(target["secret"], data)
    try:
        with requests.post(target["address"], data=data, headers=headers, timeout=TIMEOUT, stream=True,
                           allow_redirects=False, verify=not target.get("skip_cert_verify", False)) as resp:
            if 200 <= resp.status_code < 300:
                return None
            # A hostile target may answer without end: only the start of its answer is read, for the log.
            head = resp.raw.read(RESPONSE_READ_MAX, decode_content=False) or b""
            text = head.decode("utf-8", "replace").replace("\n", " ").strip()[:200]
            return f"HTTP {resp.status_code}" + (f": {text}" if text else "")
    except requests.RequestException as e:
        return f"{type(e).__name__}: {str(e)[:300]}"


def signature(secret: str, data: bytes) -> str:
    """The hex HMAC-SHA256 of `data` with `secret` (as GitHub signs its webhooks)."""
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(BACKOFF_BASE * 2 ** (attempts - 1), BACKOFF_MAX)


def deliver_due(db: Database) -> int:
    """Claim and send up to BATCH due deliveries (in parallel); how many were claimed."""
    from sqlalchemy import select, update

    from registry.model.tables import WebhookDelivery
    now = time.time()
    due = (WebhookDelivery.status.in_(("Pending", "Running")), WebhookDelivery.next_attempt <= now)
    with db.session() as s:
        ids = s.scalars(select(WebhookDelivery.id).where(*due).order_by(WebhookDelivery.next_attempt)
                        .limit(BATCH)).all()
    claimed = []
    for delivery_id in ids:
        # The claim is one conditional UPDATE: of several senders (workers, replicas) exactly one changes the row.
        with db.session() as s:
            result = s.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, *due)
                               .values(status="Running", next_attempt=now + LEASE))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(delivery_id)
    threads = [threading.Thread(target=_send, args=(db, d), daemon=True) for d in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(claimed)


def _send(db: Database, delivery_id: int) -> None:
    """One attempt of a claimed delivery, and its outcome in the log."""
    from registry.model.tables import WebhookDelivery, WebhookPolicy
    with db.session() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        policy = s.get(WebhookPolicy, delivery.policy_id) if delivery is not None else None
        if delivery is None:
            return
        target = _target_of(policy, delivery)
        body = delivery.payload
    error = post(target, body) if target is not None else "the policy no longer has this target"
    with db.session() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None:  # its policy was deleted meanwhile
            return
        delivery.attempts += 1
        delivery.last_error = (error or "")[:1024]
        if error is None:
            delivery.status = "Success"
        elif target is None or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = "Error"
        else:
            delivery.status = "Pending"
            delivery.next_attempt = time.time() + backoff(delivery.attempts)
    if error is not None:
        # The host only: an address may carry credentials (https://user:token@host/...), which are never logged.
        log.warning("webhook delivery %d to %s failed: %s", delivery_id,
                    urlsplit(target["address"]).hostname if target else "a removed target", error)


def _target_of(policy, delivery: WebhookDelivery) -> dict | None:
    """The policy's target this delivery goes to (its current secret and headers), if it still has it."""
    if policy is None:
        return None
    cloud = delivery.payload.startswith('{"specversion"')
    for t in policy.targets or []:
        if t.get("address") == delivery.address and (t.get("payload_format") == "CloudEvents") == cloud:
            return t
    return None


def start(db: Database) -> Loop:
    """This process's sender for `db`: wakes on a new delivery, else looks every POLL seconds (a forked worker
    starts its own)."""
    return background.ensure(("webhook-sender", id(db)), "webhook-sender", lambda: deliver_due(db), POLL)


def wake(db: Database) -> None:
    """Have this process's sender look for due deliveries now."""
    start(db).wake()


def test_policy(body: dict, project) -> list[str]:
    """Send a sample event to each target of an (unsaved) policy body now; the errors, one per failed target."""
    from registry.events import sample_bodies
    from registry.model.tables import WebhookPolicy
    fields = validate({"name": "test", "event_types": ["PUSH_ARTIFACT"], **body})
    policy = WebhookPolicy(id=0, project_id=project.id, name=fields["name"], targets=fields["targets"])
    errors = []
    for target, data in sample_bodies(policy, project):
        error = post(target, data)
        if error is not None:
            errors.append(f"{target['address']}: {error}")
    return errors

