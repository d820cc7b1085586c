"""Test settings: a temporary data directory and fast fakes by default.

Integration tests switch to the real model, real embeddings and real Chroma with the
``real_stack`` fixture (tests/conftest.py). DATABASE_URL / REDIS_URL still apply, so the
same suite runs against PostgreSQL and Redis.
"""
import os
import tempfile

os.environ.setdefault("NANOSENTRI_DATA_DIR", tempfile.mkdtemp(prefix="nanosentri-test-"))
os.environ.setdefault("NANOSENTRI_LLM_BACKEND", "mock")
os.environ.setdefault("NANOSENTRI_EMBEDDING_BACKEND", "mock")
os.environ.setdefault("NANOSENTRI_VECTOR_STORE", "memory")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Most tests exercise the model's path (streaming, stop, grounding); the product default is off
# (tests/test_narrative_setting.py checks it and the extract-only path).
os.environ.setdefault("NANOSENTRI_LLM_NARRATIVE", "1")
# The demo site is `runapp`'s (on by default there); tests that want it turn it on.
os.environ.setdefault("NANOSENTRI_DEMO", "0")
# No heartbeat thread writing to the test database behind the tests' back; tests/test_inflight.py
# calls the heartbeat and the sweep directly.
os.environ.setdefault("NANOSENTRI_ANSWER_HEARTBEAT_SECONDS", "0")

from nanosentri_site.settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
