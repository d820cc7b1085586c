"""Demo users for a fresh install: one per role, with generated passwords kept in the data dir."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.accounts.roles import ADMIN, ROLE_PERMISSIONS, ROLES, SUPERVISOR, TECHNICIAN

DEMO_USERS = (("admin", ADMIN), ("supervisor", SUPERVISOR), ("technician", TECHNICIAN))


def roles_ensure(*, using: str = "default") -> None:
    """The role groups exist and hold exactly the permissions of ``ROLE_PERMISSIONS``.

    Permissions whose app is not migrated yet are skipped; the next post_migrate adds them.
    """
    from django.contrib.auth.models import Permission

    for role in ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = ROLE_PERMISSIONS.get(role, set())
        perms = []
        for dotted in sorted(wanted):
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
            if perm is not None:
                perms.append(perm)
        group.permissions.set(perms)


def _password_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-passwords.json"


def demo_users_ensure(*, password: str | None = None) -> dict[str, str]:
    """Create the demo users if missing; return {username: password}.

    Passwords are generated once and stored (mode 0600) in the data directory, so every
    start prints the same ones. ``password`` (or NANOSENTRI_DEMO_PASSWORD) forces one.
    """
    path = _password_file()
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    User = get_user_model()
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    result = {}
    for username, role in DEMO_USERS:
        wanted = password or stored.get(username) or secrets.token_urlsafe(9)
        user, created = User.objects.get_or_create(username=username)
        if created or username not in stored or (password and not user.check_password(password)):
            user.set_password(wanted)
            user.is_staff = role == ADMIN
            user.is_superuser = role == ADMIN
            user.save()
        user.groups.add(Group.objects.get(name=role))
        result[username] = wanted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    path.chmod(0o600)
    return result
