import shutil
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from apps.accounts.roles import ADMIN, SUPERVISOR, TECHNICIAN

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MANUALS = SHARED / "manuals"
SMARTEVSE = MANUALS / "SmartEVSE_v3_Installation_Manual_v1.01_sw3.00.pdf"
TROUBLESHOOTING = MANUALS / "Creality_Ender-3_Trouble_Shootings.pdf"
QUICK_START = MANUALS / "Creality_Ender-3_Quick_Start_Guide_V1.0.pdf"


def manual(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared manuals not found at {path.parent} (CI always has them)")
    return path


@pytest.fixture
def smartevse():
    return manual(SMARTEVSE)


@pytest.fixture
def troubleshooting():
    return manual(TROUBLESHOOTING)


@pytest.fixture
def quick_start():
    return manual(QUICK_START)


@pytest.fixture(autouse=True)
def _isolated_data(settings, tmp_path):
    """Uploads and Chroma of each test go to its own temporary directory."""
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.CHROMA_DIR = tmp_path / "chroma"
    settings.MODEL_DIR = tmp_path / "models"
    # In-memory Chroma is shared by the whole process: one collection per test.
    settings.NANOSENTRI_CHROMA_COLLECTION = f"test-{uuid.uuid4().hex[:12]}"
    settings.NANOSENTRI_CHROMA_INCIDENT_COLLECTION = f"test-incidents-{uuid.uuid4().hex[:12]}"
    yield


@pytest.fixture(autouse=True)
def _catalogue(request):
    """Transactional tests flush every table, data migrations included: put the catalogue back."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker or {"db", "transactional_db"} & names:
        transactional = (marker and marker.kwargs.get("transaction")) or "transactional_db" in names
        request.getfixturevalue("transactional_db" if transactional else "db")
        from apps.assets.catalogue import catalogue_ensure

        catalogue_ensure()
    yield


def _user(django_user_model, username, role):
    user = django_user_model.objects.create_user(username=username, password="pw-" + username)
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    return user


@pytest.fixture
def admin_user(db, django_user_model):
    return _user(django_user_model, "alice", ADMIN)


@pytest.fixture
def technician(db, django_user_model):
    return _user(django_user_model, "bob", TECHNICIAN)


@pytest.fixture
def supervisor(db, django_user_model):
    return _user(django_user_model, "carol", SUPERVISOR)


@pytest.fixture
def outsider(db, django_user_model):
    """Logged in, but with no role."""
    return django_user_model.objects.create_user(username="charlie", password="pw-charlie")


@pytest.fixture
def real_stack(settings, tmp_path):
    """The real thing: llama-cpp + the bundled GGUF, MiniLM embeddings, persistent Chroma."""
    settings.NANOSENTRI_LLM_BACKEND = "llamacpp"
    settings.NANOSENTRI_EMBEDDING_BACKEND = "sentence-transformers"
    settings.NANOSENTRI_VECTOR_STORE = "chroma"
    settings.CHROMA_DIR = tmp_path / "chroma"
    yield settings
    from chromadb.api.shared_system_client import SharedSystemClient

    from apps.knowledge.vector_index import reset_vector_index

    reset_vector_index()
    SharedSystemClient.clear_system_cache()
    shutil.rmtree(tmp_path / "chroma", ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``topology`` start a dozen processes on PostgreSQL, Redis and Mosquitto: they
    run only when the ``-m`` expression names them (scripts/test.sh pass 3: ``-m topology``),
    never as part of a whole-suite or an ``integration`` run."""
    if "topology" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="topology test: run it with -m topology (scripts/test.sh pass 3)")
    for item in items:
        if item.get_closest_marker("topology"):
            item.add_marker(skip)
