#!/usr/bin/env python
"""Serve the app's language model over HTTP: llama-cpp-python's OpenAI-compatible server.

    .venv/bin/python scripts/model_server.py [--host 127.0.0.1] [--port 8080] [extra llama_cpp.server options]

The GGUF is the one the app would load itself (``NANOSENTRI_LLM_MODEL``, else the bundled model),
with the app's context size (``NANOSENTRI_LLM_CONTEXT``). Web processes then stream from it with
``NANOSENTRI_LLM_BACKEND=openai`` and ``NANOSENTRI_LLM_SERVER_URL=http://<host>:<port>/v1``: one copy
of the model for every web process (docker-compose.yml's ``llm`` service).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args, extra = parser.parse_known_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanosentri_site.settings")
    import django

    django.setup()
    from django.conf import settings

    from models.paths import language_model_path

    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(language_model_path()),
        "--host", args.host, "--port", str(args.port), "--n_ctx", str(settings.NANOSENTRI_LLM_CONTEXT),
        *extra,
    ]
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main()
