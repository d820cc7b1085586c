"""Deployment settings: `check --deploy` is clean with the production settings of docs/deploy.md,
and the defaults keep `make run` working over plain http on localhost."""
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# Anything the test run itself set (tests/settings.py, test.sh's pass 2) stays out of the child.
_CLEARED_PREFIXES = ("NANOSENTRI_", "DJANGO_", "SECRET_KEY")
_CLEARED = {"DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}


def documented_production_env() -> dict:
    """The variables of the first ```sh block under "## Production settings" in docs/deploy.md."""
    text = DEPLOY_DOC.read_text()
    section = text.split("## Production settings", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    env = {}
    for line in block.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    return env


def _child_env(tmp_path, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES) and k not in _CLEARED}
    env.update(extra)
    env["DJANGO_SETTINGS_MODULE"] = "nanosentri_site.settings"
    env["NANOSENTRI_DATA_DIR"] = str(tmp_path / "data")
    return env


def _run(args, env):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def _settings(env) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n, None) for n in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER', 'SECURE_HSTS_SECONDS', 'ALLOWED_HOSTS', "
        "'CSRF_TRUSTED_ORIGINS', 'DEBUG')}))"
    )
    out = _run(["-c", code], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    documented = documented_production_env()
    assert documented["NANOSENTRI_BEHIND_TLS_PROXY"] == "true" and documented["DEBUG"] == "false"
    secret = tmp_path / "secret_key"
    secret.write_text(secrets.token_urlsafe(50))  # as docs/deploy.md says to make it
    env = _child_env(tmp_path, {**documented, "SECRET_KEY_FILE": str(secret)})

    out = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)

    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues (0 silenced)." in out.stdout, out.stdout + out.stderr


def test_check_deploy_flags_the_development_defaults(tmp_path):
    # The same check is not blind: the defaults (plain http on localhost) are not a deployment.
    out = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], _child_env(tmp_path, {}))

    assert out.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in out.stderr, out.stderr


def test_the_defaults_serve_plain_http_on_localhost(tmp_path):
    values = _settings(_child_env(tmp_path, {}))

    assert values["SESSION_COOKIE_SECURE"] is False and values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["SECURE_HSTS_SECONDS"] == 0 and values["DEBUG"] is False
    assert "127.0.0.1" in values["ALLOWED_HOSTS"] and "localhost" in values["ALLOWED_HOSTS"]


def test_behind_a_tls_proxy_the_header_is_trusted_and_cookies_are_secure(tmp_path):
    values = _settings(_child_env(tmp_path, {
        "NANOSENTRI_BEHIND_TLS_PROXY": "true",
        "ALLOWED_HOSTS": "nanosentri.example.com, 127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://nanosentri.example.com",
    }))

    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["ALLOWED_HOSTS"] == ["nanosentri.example.com", "127.0.0.1"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://nanosentri.example.com"]


def test_secure_cookies_can_be_set_without_the_proxy_switch(tmp_path):
    values = _settings(_child_env(tmp_path, {"NANOSENTRI_SECURE_COOKIES": "true"}))

    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] is None and values["SECURE_SSL_REDIRECT"] is False


@pytest.fixture
def behind_proxy(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    return settings


@pytest.mark.django_db
def test_behind_the_proxy_plain_http_is_redirected_but_the_health_check_is_not(client, behind_proxy):
    page = client.get("/login/")
    assert page.status_code == 301 and page["Location"] == "https://testserver/login/"

    health = client.get("/healthz/")
    assert health.status_code == 200 and health.json()["status"] == "ok"


@pytest.mark.django_db
def test_behind_the_proxy_https_requests_get_secure_cookies(client, behind_proxy):
    response = client.get("/login/", headers={"X-Forwarded-Proto": "https"})

    assert response.status_code == 200
    assert response.cookies["csrftoken"]["secure"] is True
