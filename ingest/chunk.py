"""Split pages into chunks sized for the embedding model, keeping the page on every chunk.

all-MiniLM-L6-v2 reads at most 256 word pieces; chunks are measured with the embedder's own
tokenizer (not tiktoken) so nothing is silently truncated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ingest.parse import Page


@dataclass
class Chunk:
    page: int
    index: int  # position in the document, 0-based
    text: str


def chunk_pages(
    pages: list[Page],
    *,
    tokenize: Callable[[str], list],
    chunk_tokens: int = 200,
    overlap: int = 40,
) -> list[Chunk]:
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap, chunk_tokens // 2),
        tokenizer=tokenize,
        paragraph_separator="\n\n",
    )
    chunks: list[Chunk] = []
    for page in pages:
        if not page.text.strip():
            continue
        for piece in splitter.split_text(page.text):
            piece = piece.strip()
            if piece:
                chunks.append(Chunk(page=page.number, index=len(chunks), text=piece))
    return chunks
