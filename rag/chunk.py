"""Split cleaned articles into sentence-aware chunks sized for the embedding model.

all-MiniLM-L6-v2 reads at most 256 wordpieces and silently ignores the rest, so chunks are
measured with the model's own tokenizer (not tiktoken) and the title that is embedded with
each chunk counts against the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clean import CleanDocument
from .text import split_sentences

Tokenizer = Callable[[str], list[int]]



@dataclass(frozen=True)
class Chunk:
    """A piece of an article, with where it sits in the cleaned text."""

    chunk_id: str  # "<doc_id>#<index>": stable, so re-ingesting updates in place
    doc_id: str
    index: int
    text: str
    start: int  # character offsets into the cleaned text: text == clean[start:end]
    end: int
    embed_text: str  # what the embedding model sees: title + text
    metadata: dict[str, Any]


def chunk_id(doc_id: str, index: int) -> str:
    return f"{doc_id}#{index}"


class Chunker:
    """Sentence-aware chunking with llama-index's `SentenceSplitter` and exact offsets."""

    def __init__(self, tokenizer: Tokenizer, chunk_size: int, chunk_overlap: int) -> None:
        self._tokenizer = tokenizer
        self._size = (chunk_size, chunk_overlap)
        self._splitters: dict[str, Any] = {}

    def _splitter(self, lang: str) -> Any:  # -> SentenceSplitter
        """English chunks at punkt's sentence boundaries (as always); other languages at their own."""
        if lang not in self._splitters:
            # Imported here: llama-index is ~half of a cold `qabot ask`, which never chunks.
            from llama_index.core.node_parser import SentenceSplitter

            sentences = None if lang == "en" else _sentence_pieces(lang)
            self._splitters[lang] = SentenceSplitter(
                chunk_size=self._size[0], chunk_overlap=self._size[1], tokenizer=self._tokenizer,
                chunking_tokenizer_fn=sentences,
            )
        return self._splitters[lang]

    def chunk(self, doc: CleanDocument, doc_id: str, doc_hash: str, lang: str = "en") -> list[Chunk]:
        """The chunks of one cleaned document written in `lang` (rag/language.py)."""
        from llama_index.core import Document

        meta = {
            "doc_id": doc_id,
            "title": doc.title,
            "date": doc.date,
            "url": doc.url,
            "source": doc.source,
            "author": doc.author,
            "doc_hash": doc_hash,
            # yyyymmdd as a number: Chroma compares numbers, not strings, in range filters
            "date_int": int(doc.date.replace("-", "")) if doc.date else 0,
            "lang": lang,  # the keyword index stems and the answerer splits each chunk in its language
        }
        not_embedded = [k for k in meta if k != "title"]
        document = Document(
            text=doc.text,
            metadata=meta,
            excluded_embed_metadata_keys=not_embedded,
            excluded_llm_metadata_keys=not_embedded,
            metadata_template="{value}",
            metadata_seperator="\n",
            text_template="{metadata_str}\n\n{content}",
        )
        nodes = self._splitter(lang).get_nodes_from_documents([document])
        chunks: list[Chunk] = []
        cursor = 0
        for index, node in enumerate(nodes):
            text = node.get_content()
            start = node.start_char_idx
            if start is None or doc.text[start : start + len(text)] != text:
                # The splitter could not place the chunk; find it after the previous one.
                found = doc.text.find(text, max(0, cursor - len(text)))
                start = found if found >= 0 else doc.text.find(text)
            if start < 0:  # pragma: no cover - the splitter only ever returns substrings
                raise RuntimeError(f"chunk {index} of {doc_id} is not a substring of the cleaned text")
            end = start + len(text)
            cursor = end
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(doc_id, index),
                    doc_id=doc_id,
                    index=index,
                    text=text,
                    start=start,
                    end=end,
                    embed_text=node.get_content(metadata_mode="embed"),
                    metadata={**meta, "chunk_index": index, "start": start, "end": end},
                )
            )
        return chunks


def _sentence_pieces(lang: str) -> Callable[[str], list[str]]:
    """A `chunking_tokenizer_fn` for SentenceSplitter: `text` cut at its sentence starts in `lang`.

    Like llama-index's own (punkt) one, the pieces run from one sentence start to the next, so
    they add up to the text and whitespace stays with the sentence before it.
    """

    def pieces(text: str) -> list[str]:
        starts = [s for s, _ in split_sentences(text, lang)]
        if not starts:
            return [text]
        starts[0] = 0
        return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]

    return pieces
