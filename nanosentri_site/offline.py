"""Keep every library off the network before any of them is imported.

Imported first by the ``nanosentri_site`` package, so it runs for manage.py, the ASGI
server, the Celery worker and the tests alike.
"""
import importlib.util
import os
from pathlib import Path


def _llama_index_tiktoken_cache() -> str | None:
    # llama-index ships the tiktoken files it needs; point tiktoken there so it never downloads.
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "_static" / "tiktoken_cache"
    return str(path) if path.is_dir() else None


def apply() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # Chroma
    os.environ.setdefault("CHROMA_TELEMETRY_IMPL", "none")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cache = _llama_index_tiktoken_cache()
    if cache:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", cache)
