"""The views executions and their tasks share (retention runs, webhook deliveries, replication runs): a page of
rows newest first, a page of a list, a task's log as text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response
from sqlalchemy import func, select

from registry.api.common import page_response, paging
from registry.guard import model


def page_of(stmt, order, render: Callable[[list], list[dict]]) -> Response:
    """One page (the request's `page`, `page_size`) of `stmt`'s rows, `order` descending, as `render` shows them
    (all the page's rows at once, so it may look up what they share in one query); X-Total-Count and Link."""
    page = paging()
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(s.scalars(stmt.order_by(order.desc()).offset(page.offset).limit(page.size)).all())
    return page_response(render(rows), total, page)


def page_of_list(items: list[Any]) -> Response:
    """One page of a list already made."""
    page = paging()
    return page_response(items[page.offset:page.offset + page.size], len(items), page)


def log_response(text: str) -> Response:
    """A task's log, as Harbor serves them: plain text."""
    return Response(text, mimetype="text/plain")
