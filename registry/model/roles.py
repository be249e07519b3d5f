"""Harbor's project roles (by its role ids) and the rights each holds."""

from __future__ import annotations

PROJECT_ADMIN, DEVELOPER, GUEST, MAINTAINER, LIMITED_GUEST = 1, 2, 3, 4, 5

# Harbor's names, as its API spells them in `role_name`.
NAMES = {PROJECT_ADMIN: "projectAdmin", DEVELOPER: "developer", GUEST: "guest", MAINTAINER: "maintainer",
         LIMITED_GUEST: "limitedGuest"}

# Rights: pull, push and delete on the project's repositories; "members" to manage members (and robots);
# "policies" to manage quotas' view, immutability, retention and webhooks; "read" to see the project's pages
# beyond its repositories (members list, logs), which a limited guest lacks.
RIGHTS: dict[int, frozenset[str]] = {
    PROJECT_ADMIN: frozenset({"pull", "push", "delete", "members", "policies", "read"}),
    MAINTAINER: frozenset({"pull", "push", "delete", "policies", "read"}),
    DEVELOPER: frozenset({"pull", "push", "read"}),
    GUEST: frozenset({"pull", "read"}),
    LIMITED_GUEST: frozenset({"pull"}),
}
