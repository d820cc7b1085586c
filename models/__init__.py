"""Language-model and embedding-model runtimes, and where their files are found.

Nothing here loads a model at import time: ``get_language_model()`` and ``get_embedder()``
load once per process on first use.
"""
