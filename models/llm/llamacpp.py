"""In-process GGUF runtime through llama-cpp-python."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from models.errors import ModelUnavailable
from models.llm.base import ChatMessage, LanguageModel, ShouldStop

log = logging.getLogger(__name__)


class LlamaCppLanguageModel(LanguageModel):
    def __init__(
        self,
        model_path: Path,
        *,
        context_window: int,
        n_threads: int,
        n_threads_batch: int,
        chat_format: str = "",
        chat_template_file: str = "",
    ):
        try:
            import llama_cpp
        except ImportError:
            raise ModelUnavailable("llama-cpp-python is not installed") from None
        kwargs = {}
        if chat_format:
            kwargs["chat_format"] = chat_format
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=context_window,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                logits_all=False,
                verbose=False,
                **kwargs,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"Could not load the language model {model_path}: {exc}") from exc
        if chat_template_file:
            self._llm.chat_handler = _handler_from_template(self._llm, chat_template_file)
        self.name = model_path.name
        self.context_window = context_window
        # One llama context cannot run two generations at once.
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float, should_stop: ShouldStop
    ) -> Iterator[str]:
        from llama_cpp import LogitsProcessorList

        eos = self._llm.token_eos()

        def end_when_stopped(_input_ids, scores):
            # Called by llama-cpp before each token is sampled: on stop, only end-of-sequence
            # remains possible, so the model's own loop ends.
            if should_stop():
                scores[:] = -np.inf
                scores[eos] = 0.0
            return scores

        # The stream is lazy: each token is computed only when the loop below asks for it, so
        # leaving the loop (and closing the stream) also stops the computation.
        with self._lock:
            stream = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
                repeat_penalty=1.15,
                stream=True,
                logits_processor=LogitsProcessorList([end_when_stopped]),
            )
            try:
                for chunk in stream:
                    if should_stop():
                        break
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            finally:
                stream.close()


def _handler_from_template(llm, template_file: str):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = Path(template_file)
    if not path.is_file():
        raise ModelUnavailable(f"Chat template file not found: {path}")
    eos = llm.detokenize([llm.token_eos()]).decode("utf-8", errors="ignore")
    bos = llm.detokenize([llm.token_bos()]).decode("utf-8", errors="ignore")
    formatter = Jinja2ChatFormatter(template=path.read_text(), eos_token=eos, bos_token=bos)
    return formatter.to_chat_handler()
