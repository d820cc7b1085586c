"""In-process GGUF runtime through llama-cpp-python.

KV cache reuse: llama-cpp-python evaluates only the part of a prompt after the longest prefix it
shares with what the context already holds (``Llama.generate``). A follow-up's prompt starts with
the previous turn's prompt and answer (``apps/chat/prompting.py``), so right after its parent it
costs only its new tokens. When other conversations ran in between, the context holds theirs: so
each conversation's context is saved after its answer (``session``, in a ``SessionStateCache``
bounded by NANOSENTRI_LLM_STATE_CACHE_MB) and put back before its next question.
"""
from __future__ import annotations

import ctypes
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterator

import numpy as np

from models.errors import ModelUnavailable
from models.llm.base import ChatMessage, LanguageModel, ShouldStop
from models.llm.state_cache import SessionStateCache

log = logging.getLogger(__name__)


@dataclass
class KVState:
    """A llama.cpp context as it was: the tokens it had evaluated and its state bytes (KV cache,
    last logits). Not llama-cpp-python's ``LlamaState``: that one also copies the Python-side
    logits buffer (n_batch × n_vocab floats, ~100 MB for a 49k vocabulary), which sampling does
    not need once the next prompt is evaluated."""

    input_ids: np.ndarray
    data: ctypes.Array
    nbytes: int


@dataclass
class PromptEval:
    """How the last prompt was evaluated."""

    session: Hashable | None = None
    restored: bool = False  # the session's saved context was put back first
    reused_tokens: int = 0  # prompt tokens taken from the KV cache
    evaluated_tokens: int = 0  # prompt tokens evaluated
    restore_ms: float = 0.0
    save_ms: float = 0.0


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
        state_cache_mb: float = 0,
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
        # Per conversation: its context after its last answer.
        self.states: SessionStateCache[KVState] = SessionStateCache(int(state_cache_mb * 1024 * 1024))
        self._context_session: Hashable | None = None  # whose tokens the live context holds
        self.last_eval = PromptEval()
        self._first_eval: tuple[int, int] | None = None
        self._llm.eval = self._counting_eval(self._llm.eval)

    def _counting_eval(self, evaluate):
        """``Llama.eval`` that also notes the first call of a generation: the prompt's part that
        was not in the KV cache (its length) and how much was (the context's length then)."""

        def counting_eval(tokens):
            if self._first_eval is None:
                self._first_eval = (self._llm.n_tokens, len(tokens))
            return evaluate(tokens)

        return counting_eval

    def prompt_stats(self) -> dict:
        e = self.last_eval
        return {
            "prompt_reused_tokens": e.reused_tokens,
            "prompt_eval_tokens": e.evaluated_tokens,
            "kv_restored": e.restored,
        }

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        should_stop: ShouldStop,
        session: Hashable | None = None,
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
            self.last_eval = PromptEval(session=session)
            self._restore(session)
            self._first_eval = None
            stream = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                max_tokens=max_tokens,
                temperature=temperature,
                repeat_penalty=1.15,
                stream=True,
                logits_processor=LogitsProcessorList([end_when_stopped]),
            )
            failed = False
            try:
                for chunk in stream:
                    if should_stop():
                        break
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            except GeneratorExit:  # the caller stopped reading: the context is whole up to here
                raise
            except BaseException:
                failed = True
                raise
            finally:
                stream.close()
                if self._first_eval is not None:
                    self.last_eval.reused_tokens, self.last_eval.evaluated_tokens = self._first_eval
                # A generation that failed half-way leaves a context nobody should continue from.
                self._context_session = None if failed else session
                if not failed and session is not None:
                    self._save(session)

    def _restore(self, session: Hashable | None) -> None:
        """Put ``session``'s saved context back, unless the live context is already its own."""
        if session is None or session == self._context_session or not self.states.enabled:
            return
        state = self.states.get(session)
        if state is None:
            return
        started = time.perf_counter()
        n = len(state.input_ids)
        if llama_cpp_state_set(self._llm, state) != state.nbytes:
            # Not restorable (should not happen with the same model and n_ctx): start cold.
            self.states.pop(session)
            self._llm.reset()
            self._context_session = None
            log.warning("could not restore the KV cache of session %r", session)
            return
        self._llm.input_ids[:n] = state.input_ids
        self._llm.n_tokens = n
        # The logits in the restored state are not llama-cpp-python's own: it must evaluate at
        # least one token before sampling (it does: the new prompt is longer).
        self._llm._requires_eval = True
        self._context_session = session
        self.last_eval.restored = True
        self.last_eval.restore_ms = round((time.perf_counter() - started) * 1000, 2)

    def _save(self, session: Hashable) -> None:
        if not self.states.enabled:
            return
        started = time.perf_counter()
        size = llama_cpp_state_size(self._llm)
        if size + self._llm.n_tokens * 4 > self.states.capacity_bytes:
            self.states.pop(session)  # its older context would be of no use now either
            self.states.stats.refused += 1
            return
        data, nbytes = llama_cpp_state_get(self._llm, size)
        ids = self._llm.input_ids[: self._llm.n_tokens].copy()
        self.states.put(session, KVState(input_ids=ids, data=data, nbytes=nbytes), nbytes + ids.nbytes)
        self.last_eval.save_ms = round((time.perf_counter() - started) * 1000, 2)


def llama_cpp_state_size(llm) -> int:
    import llama_cpp

    return int(llama_cpp.llama_state_get_size(llm.ctx))


def llama_cpp_state_get(llm, size: int) -> tuple[ctypes.Array, int]:
    import llama_cpp

    data = (ctypes.c_uint8 * size)()
    nbytes = int(llama_cpp.llama_state_get_data(llm.ctx, data, size))
    if nbytes > size:
        raise RuntimeError("llama.cpp state larger than its reported size")
    return data, nbytes


def llama_cpp_state_set(llm, state: KVState) -> int:
    import llama_cpp

    return int(llama_cpp.llama_state_set_data(llm.ctx, state.data, state.nbytes))


def _handler_from_template(llm, template_file: str):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = Path(template_file)
    if not path.is_file():
        raise ModelUnavailable(f"Chat template file not found: {path}")
    eos = llm.detokenize([llm.token_eos()]).decode("utf-8", errors="ignore")
    bos = llm.detokenize([llm.token_bos()]).decode("utf-8", errors="ignore")
    formatter = Jinja2ChatFormatter(template=path.read_text(), eos_token=eos, bos_token=bos)
    return formatter.to_chat_handler()
