"""The three roles are Django groups. Superusers count as admins."""
from __future__ import annotations

ADMIN = "admin"
SUPERVISOR = "supervisor"
TECHNICIAN = "technician"
ROLES = (ADMIN, SUPERVISOR, TECHNICIAN)


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
