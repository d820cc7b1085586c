"""The three roles are Django groups. Superusers count as admins."""
from __future__ import annotations

ADMIN = "admin"
SUPERVISOR = "supervisor"
TECHNICIAN = "technician"
ROLES = (ADMIN, SUPERVISOR, TECHNICIAN)

# What each role's group may do, as Django permissions ("app_label.codename"). Views, downloads,
# the API and websocket routes check these (``user.has_perm``), and ``roles_ensure`` gives them
# to the groups after every migrate. Which objects a permission reaches is the selectors' job
# (a technician sees their own incidents and their assets').
_TECHNICIAN_PERMS = {
    "chat.add_conversation",  # use the chat
    "assets.view_asset",  # asset pages, live readings, alerts
    "knowledge.view_document",  # open the manuals the answers cite
    "incidents.view_incident",
    "incidents.add_incident",
    "incidents.change_incident",
    "chat.add_answerfeedback",
}
_SUPERVISOR_PERMS = _TECHNICIAN_PERMS | {
    "incidents.view_all_incidents",
    "incidents.export_incidents",
    "incidents.view_dashboard",
    "chat.view_answerfeedback",
    "chat.review_feedback",
}
ROLE_PERMISSIONS = {
    TECHNICIAN: _TECHNICIAN_PERMS,
    SUPERVISOR: _SUPERVISOR_PERMS,
    ADMIN: _SUPERVISOR_PERMS
    | {
        "knowledge.add_document",  # upload, re-index, delete manuals and logs
        "knowledge.change_document",
        "knowledge.delete_document",
    },
}


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_nanosentri_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._nanosentri_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


def is_admin(user) -> bool:
    return has_role(user, ADMIN)
