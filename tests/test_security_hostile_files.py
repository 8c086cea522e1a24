"""Hostile documents: random bytes and random Unicode never crash loading, cleaning or chunking,
and never cost a valid file of the same batch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunk import Chunker
from rag.clean import clean_text
from rag.load import decode_bytes, load_corpus, normalize_text

from .conftest import CORPUS

VALID = (CORPUS / "002_1422b7e4d913b162.txt").read_bytes()
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(st.binary(max_size=4096))
def test_random_bytes_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    result = decode_bytes(raw)
    if isinstance(result, str):
        assert result  # a reason to show
    else:
        text, notes = result
        assert isinstance(text, str) and isinstance(notes, list)


@PROFILE
@given(st.text(max_size=3000))
def test_cleaning_random_text_keeps_only_verbatim_lines(text: str) -> None:
    normalized = normalize_text(text)
    doc = clean_text(normalized)
    source_lines = {ln.strip() for ln in normalized.split("\n")}
    for line in doc.text.split("\n\n"):
        if line:
            assert line in source_lines
    assert isinstance(doc.title, str)


@PROFILE
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=20, max_size=400), min_size=1, max_size=12))
def test_chunks_of_any_text_are_substrings_at_their_offsets(embedder, paragraphs: list[str]) -> None:  # noqa: ANN001
    body = "\n\n".join(p.strip() + " This sentence ends with a full stop." for p in paragraphs)
    doc = clean_text(normalize_text(body))
    if not doc.text:
        return
    for chunk in Chunker(embedder.tokenizer, 64, 8).chunk(doc, "random.txt", "hash"):
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert len(embedder.tokenizer(chunk.embed_text)) <= 256


@PROFILE
@given(st.binary(max_size=2048), st.sampled_from([".txt", ".md", ".html"]))
def test_a_hostile_file_never_costs_the_valid_one(raw: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp)
        (corpus / "good.txt").write_bytes(VALID)
        (corpus / f"hostile{suffix}").write_bytes(raw)
        result = load_corpus(corpus, 10_000_000)
        assert "good.txt" in [d.doc_id for d in result.documents]
        names = [d.doc_id for d in result.documents] + [s.doc_id for s in result.skipped]
        assert sorted(names) == sorted(["good.txt", f"hostile{suffix}"])  # each file accounted for


def test_fixture_files(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_bytes(VALID)
    (corpus / "zero.txt").write_bytes(b"")
    (corpus / "truncated.txt").write_bytes("Prague hosted the meeting in May – officials said".encode()[:-2] + "é".encode()[:1])
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 8)
    with open(corpus / "huge.txt", "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # 50 MB
    (corpus / "utf16.txt").write_bytes("\ufeffA UTF-16 article about 5G in Brno.".encode("utf-16-le"))
    (corpus / "latin1.txt").write_bytes("Z\xfcrich und Gen\xe8ve".encode("latin-1"))
    secret = tmp_path / "secret.txt"
    secret.write_text("private notes outside the corpus")
    (corpus / "link.txt").symlink_to(secret)
    (tmp_path / "outside_dir").mkdir()
    (tmp_path / "outside_dir" / "x.txt").write_text("also outside")
    (corpus / "linked_dir").symlink_to(tmp_path / "outside_dir", target_is_directory=True)

    result = load_corpus(corpus, 10 * 1024 * 1024)
    docs = {d.doc_id: d for d in result.documents}
    reasons = {s.doc_id: s.reason for s in result.skipped}
    assert set(docs) == {"good.txt", "truncated.txt", "utf16.txt", "latin1.txt"}
    assert "empty" in reasons["zero.txt"] and "binary" in reasons["binary.txt"]
    assert "over the" in reasons["huge.txt"] and "outside the corpus" in reasons["link.txt"]
    assert "linked_dir/x.txt" not in docs and "linked_dir/x.txt" not in reasons  # directory links are not followed
    assert docs["latin1.txt"].text == "Zürich und Genève" and docs["latin1.txt"].notes
    assert docs["truncated.txt"].text.startswith("Prague hosted the meeting")
    assert docs["utf16.txt"].text == "A UTF-16 article about 5G in Brno."


@pytest.mark.parametrize("bom,encoding", [("\ufeff", "utf-16-be"), ("\ufeff", "utf-8")])
def test_byte_order_marks_are_honoured(tmp_path: Path, bom: str, encoding: str) -> None:
    (tmp_path / "a.txt").write_bytes((bom + "Vilnius gets 5G.").encode(encoding))
    [doc] = load_corpus(tmp_path, 10**6).documents
    assert doc.text == "Vilnius gets 5G."
