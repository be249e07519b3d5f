"""The UI's failures as pages: a missing sign-in goes to the sign-in form, anything else gets an error page."""

from __future__ import annotations

from flask import redirect, request, url_for

from registry.ui.common import render

TITLES = {400: "Bad request", 401: "Sign-in required", 403: "Not allowed", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 412: "Refused by a policy", 413: "Too large",
          429: "Too many requests", 500: "Something went wrong"}


def error_page(status: int, message: str):
    """A 401 on a page (GET) redirects to the sign-in form, coming back after; otherwise an HTML page with `status`."""
    if status == 401 and request.method == "GET":
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("ui.login", next=target))
    return render("error.html", status, code=status, title=TITLES.get(status, "Error"), message=message)
