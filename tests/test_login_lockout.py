"""Login lockout (django-axes): repeated failed logins lock the login, even with the right password.

The settings come from NANOSENTRI_LOGIN_FAILURE_LIMIT (5) and NANOSENTRI_LOGIN_COOLOFF_MINUTES (15).
"""
import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from apps.api.services import api_token_create

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]


def _login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def _fail(client, username, times):
    return [_login(client, username, "wrong-password") for _ in range(times)]


def test_it_locks_the_login_after_the_failure_limit_even_with_the_right_password(client, technician):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5 and settings.AXES_COOLOFF_TIME == timedelta(minutes=15)  # the documented defaults

    before = _fail(client, "bob", limit - 1)
    assert [r.status_code for r in before] == [200] * (limit - 1)  # the login page, with its error

    locked = _fail(client, "bob", 1)[0]
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Login locked" in page and "try again in 15 minutes" in page

    right = _login(client, "bob", "pw-bob")
    assert right.status_code == 429 and "try again in 15 minutes" in right.content.decode()
    assert not _logged_in(client)


def test_failures_below_the_limit_do_not_lock_and_a_good_login_forgets_them(client, technician):
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT - 1)
    response = _login(client, "bob", "pw-bob")
    assert response.status_code == 302 and _logged_in(client)
    client.logout()

    # The count started again: another limit - 1 failures still do not lock.
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT - 1)
    assert _login(client, "bob", "pw-bob").status_code == 302


def test_the_lock_is_per_username(client, technician, supervisor):
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT)
    assert _login(client, "bob", "pw-bob").status_code == 429

    response = _login(client, "carol", "pw-carol")
    assert response.status_code == 302 and _logged_in(client)


def test_the_reset_command_unlocks_at_once(client, technician):
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT)
    assert _login(client, "bob", "pw-bob").status_code == 429

    call_command("axes_reset_username", "bob", stdout=StringIO())

    assert _login(client, "bob", "pw-bob").status_code == 302 and _logged_in(client)


def test_the_lock_lifts_after_the_cool_off(client, technician):
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT)
    assert _login(client, "bob", "pw-bob").status_code == 429  # and this try started the wait again

    # Just inside the cool-off: still locked.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=14))
    assert _login(client, "bob", "pw-bob").status_code == 429

    # The wait (restarted by that try) is over.
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - settings.AXES_COOLOFF_TIME)
    response = _login(client, "bob", "pw-bob")
    assert response.status_code == 302 and _logged_in(client)


def test_a_locked_users_api_token_still_works(client, technician):
    # Tokens are 256 random bits and cannot be guessed; a password lockout does not revoke them.
    _, secret = api_token_create(user=technician, name="field tablet")
    _fail(client, "bob", settings.AXES_FAILURE_LIMIT)
    assert _login(client, "bob", "pw-bob").status_code == 429

    response = client.get("/api/v1/incidents", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 200, response.content


def test_the_limit_and_the_cool_off_come_from_the_environment(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
        "NANOSENTRI_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "x" * 60,
        "NANOSENTRI_LOGIN_FAILURE_LIMIT": "3",
        "NANOSENTRI_LOGIN_COOLOFF_MINUTES": "45",
    }
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.AXES_ENABLED]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [3, 45 * 60, True]

    env["NANOSENTRI_LOGIN_FAILURE_LIMIT"] = "0"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "NANOSENTRI_LOGIN_FAILURE_LIMIT" in out.stderr


def test_the_lockout_page_is_served_under_asgi_too(technician):
    # Daphne runs the middleware chain asynchronously: the lockout page must come out the same.
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    post = async_to_sync(AsyncClient().post)
    responses = [post(reverse("login"), {"username": "bob", "password": "nope"})
                 for _ in range(settings.AXES_FAILURE_LIMIT)]
    right = post(reverse("login"), {"username": "bob", "password": "pw-bob"})

    assert [r.status_code for r in responses] == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert right.status_code == 429 and "try again in 15 minutes" in right.content.decode()
