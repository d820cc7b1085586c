"""Backup → restore → the same answer, through the real embedder and the real embedded Chroma.

Each install is a data directory driven by `manage.py` in other processes, as an operator would:
migrate, ingest two shared manuals, ask, back up; then restore into an empty data directory (and
an empty database) and ask again — once with the archive's index, once rebuilt from the uploads
(`restore --reindex`). On test.sh's PostgreSQL pass (DATABASE_URL set) every install gets a
scratch database of its own on that server, dropped afterwards.
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import SMARTEVSE, TROUBLESHOOTING, manual

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What does ERROR HIGH TEMP mean and when does charging resume?"
_CLEARED_PREFIXES = ("NANOSENTRI_", "DJANGO_", "SECRET_KEY")
_CLEARED = {"DEBUG", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}


class Install:
    """One NanoSentri install: a data directory (and maybe a database URL), run by manage.py."""

    def __init__(self, data_dir: Path, database_url: str | None):
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES) and k not in _CLEARED}
        env.update({
            "DJANGO_SETTINGS_MODULE": "nanosentri_site.settings",
            "NANOSENTRI_DATA_DIR": str(data_dir),
            "SECRET_KEY": "backup-restore-test-key-" + uuid.uuid4().hex,
            "NANOSENTRI_EMBEDDING_BACKEND": "sentence-transformers",
            "NANOSENTRI_VECTOR_STORE": "chroma",
            # The answer with the narrative off (the default) is the manuals' own lines: no model needed.
            "NANOSENTRI_LLM_BACKEND": "mock",
            "NANOSENTRI_LLM_NARRATIVE": "false",
            "NANOSENTRI_CELERY_EAGER": "1",  # `ingest` runs the worker's task in its own process
            "NANOSENTRI_OCR": "off",  # both manuals have text layers
            "LOG_LEVEL": "WARNING",
        })
        if database_url:
            env["DATABASE_URL"] = database_url
        self.env = env

    def manage(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=600)
        if ok:
            assert out.returncode == 0, f"manage.py {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out

    def ask(self) -> dict:
        result = json.loads(self.manage("ask", "--json", QUESTION).stdout.strip().splitlines()[-1])
        assert result["status"] == "completed", result
        return result


def _answer(result: dict) -> dict:
    """What must be the same after a restore: the citations (document, page, text), the answer."""
    return {
        "citations": [(c["document"], c["page"], c["text"]) for c in result["citations"]],
        "answer": result["answer"],
        "status": result["status"],
    }


@pytest.fixture(scope="module")
def database_urls():
    """A fresh database URL per install: None (SQLite in its data dir) unless DATABASE_URL is set."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        yield lambda: None
        return
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(base)
    params = dict(host=config.get("HOST") or None, port=config.get("PORT") or None,
                  user=config.get("USER") or None, password=config.get("PASSWORD") or None)
    created = []

    def new() -> str:
        name = f"nanosentri_backup_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return base.rsplit("/", 1)[0] + "/" + name

    yield new
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def backup(tmp_path_factory, database_urls):
    """An install with the two manuals, its answer to QUESTION, and its backup archive."""
    paths = [manual(SMARTEVSE), manual(TROUBLESHOOTING)]
    root = tmp_path_factory.mktemp("backup-restore")
    source = Install(root / "source", database_urls())
    source.manage("migrate", "--noinput", "-v", "0")
    source.manage("ingest", *map(str, paths), "--wait")
    answer = source.ask()
    assert answer["citations"][0]["document"].startswith("SmartEVSE") and answer["citations"][0]["page"] == 2

    archive = root / "nanosentri.tar.gz"
    out = source.manage("backup", str(archive))
    assert "index included" in out.stdout, out.stdout
    return {"archive": archive, "answer": answer, "root": root}


def _restored(backup, database_urls, name, *options) -> tuple[Install, str]:
    target = Install(backup["root"] / name, database_urls())
    assert not target.data_dir.exists()
    out = target.manage("restore", str(backup["archive"]), *options)
    return target, out.stdout


def test_a_restore_into_an_empty_data_dir_answers_with_the_same_citations(backup, database_urls):
    target, output = _restored(backup, database_urls, "restored")

    assert "index restored" in output, output
    assert sorted(p.name for p in (target.data_dir / "uploads").rglob("*.pdf")) == sorted(
        p.name for p in (backup["root"] / "source" / "uploads").rglob("*.pdf"))
    again = target.ask()
    assert _answer(again) == _answer(backup["answer"])
    assert [c["score"] for c in again["citations"]] == pytest.approx(
        [c["score"] for c in backup["answer"]["citations"]], abs=1e-3)

    # The restored install is a whole one: a second restore into it is refused.
    refused = target.manage("restore", str(backup["archive"]), ok=False)
    assert refused.returncode != 0 and "the target is not empty" in refused.stderr


def test_a_restore_that_rebuilds_the_index_answers_with_the_same_citations(backup, database_urls):
    target, output = _restored(backup, database_urls, "rebuilt", "--reindex")

    assert "index rebuilt" in output and "SmartEVSE" in output, output
    again = target.ask()
    assert _answer(again) == _answer(backup["answer"])
    assert [c["score"] for c in again["citations"]] == pytest.approx(
        [c["score"] for c in backup["answer"]["citations"]], abs=1e-3)


def test_a_damaged_archive_leaves_the_target_empty(backup, database_urls, tmp_path):
    damaged = tmp_path / "damaged.tar.gz"
    data = backup["archive"].read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    target = Install(tmp_path / "target", database_urls())

    out = target.manage("restore", str(damaged), ok=False)

    assert out.returncode != 0 and "damaged or cut short" in out.stderr, out.stderr
    assert not list((target.data_dir / "uploads").rglob("*.pdf")) and not (target.data_dir / "chroma").exists()
