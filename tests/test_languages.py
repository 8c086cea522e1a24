"""Articles in other languages: detected, split, keyword-indexed and quoted in their own language.

The packaged embedding model is English-only, so a German question finds a German article
through its words; these tests put a German news article next to the five English ones.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from rag.language import detect_language, question_languages
from rag.quotes import fragments, verify_quote
from rag.text import split_sentences, terms

from .conftest import CORPUS, FIXTURES, open_pipeline, run_qabot

GERMAN = FIXTURES / "languages" / "klaerwerk-de.txt"
GERMAN_ID = "klaerwerk-de.txt"

# A quote or sentence must never stop at an abbreviation or an ordinal ("2. Juli", "Nr. 12").
_CUT = re.compile(r"(?:\b\d{1,2}|\bNr|\bDr|\bProf|\bz\. B|\bca)\.$")


def sentences(text: str, lang: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, lang)]


# -- sentence boundaries and language identification -------------------------------------------
@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("de", "Berlin, 2. Juli 2026 – Die Anlage wurde z. B. vom Bund bezahlt. Das sagte Dr. Katrin Albers in der Str. Nr. 12.",
         ["Berlin, 2. Juli 2026 – Die Anlage wurde z. B. vom Bund bezahlt.", "Das sagte Dr. Katrin Albers in der Str. Nr. 12."]),
        ("de", "Im 20. Jahrhundert wuchs die Stadt. Die Mauer fiel 1989. Danach kam Prof. Dr. Jekel, d. h. der Experte.",
         ["Im 20. Jahrhundert wuchs die Stadt.", "Die Mauer fiel 1989.", "Danach kam Prof. Dr. Jekel, d. h. der Experte."]),
        ("fr", "Il est venu. M. Dupont a parlé avec Mme Martin, p. ex. du budget. Selon M. Macron, etc. rien ne change.",
         ["Il est venu.", "M. Dupont a parlé avec Mme Martin, p. ex. du budget.", "Selon M. Macron, etc. rien ne change."]),
        ("fr", "La Bastille est tombée le 14 juil. 1789 à Paris. Il fait 12 degrés. 13 personnes sont venues.",
         ["La Bastille est tombée le 14 juil. 1789 à Paris.", "Il fait 12 degrés.", "13 personnes sont venues."]),
        ("es", "El Sr. García llegó a EE. UU. el 5 de mayo. La Sra. López, p. ej., no vino. ¿Quién lo sabe? ¡Nadie!",
         ["El Sr. García llegó a EE. UU. el 5 de mayo.", "La Sra. López, p. ej., no vino.", "¿Quién lo sabe?", "¡Nadie!"]),
    ],
)
def test_split_sentences_keeps_abbreviations_and_ordinals_inside(lang: str, text: str, expected: list[str]) -> None:
    assert sentences(text, lang) == expected


def test_split_sentences_never_joins_paragraphs() -> None:
    text = "Die Anlage kostet 410 Millionen Euro\n\nder Bau dauerte fünf Jahre."
    assert sentences(text, "de") == ["Die Anlage kostet 410 Millionen Euro", "der Bau dauerte fünf Jahre."]


def test_english_keeps_its_own_splitter_and_terms() -> None:
    text = "Mr. Pence met Dr. Duda in Warsaw. The U.S. signed it on Monday."
    assert split_sentences(text) == split_sentences(text, "en")
    assert sentences(text, "en") == ["Mr. Pence met Dr. Duda in Warsaw.", "The U.S. signed it on Monday."]
    assert terms("Who signed the agreements?") == terms("Who signed the agreements?", "en") == ["sign", "agreement"]


def test_terms_use_the_languages_stemmer_and_stopwords() -> None:
    # "Wer", "hat", "das" are German stopwords; "Klärwerke" and "Klärwerk" share a stem.
    assert terms("Wer hat das Klärwerk gebaut?", "de") == ["klarwerk", "gebaut"]
    assert terms("die neuen Klärwerke", "de") == ["klarwerk"]
    assert terms("¿Quién ganó las elecciones?", "es") == ["gan", "eleccion"]


def test_detect_language() -> None:
    assert detect_language(GERMAN.read_text()) == "de"
    for path in sorted(CORPUS.iterdir()):
        assert detect_language(path.read_text()) == "en", path.name
    assert detect_language("Le gouvernement français a annoncé mardi un nouveau plan pour les hôpitaux publics.") == "fr"
    assert detect_language("El Gobierno de España aprobó el martes un nuevo plan para los hospitales públicos.") == "es"
    assert detect_language("") == "en" and detect_language("12, 14.") == "en"  # nothing to judge by
    assert detect_language("Die Anlage ist neu. " * 3) == detect_language("Die Anlage ist neu. " * 3)  # deterministic


def test_question_languages_among_the_index() -> None:
    assert question_languages("Wer ist Katrin Albers?", ["en", "de"]) == ("de",)
    assert question_languages("Who is Katrin Albers?", ["en", "de"]) == ("en",)
    assert question_languages("Wer ist Katrin Albers?", ["en"]) == ("en",)  # an English index: always English
    assert question_languages("Was plant der Bezirk Pankow?", ["en", "de"]) == ("de",)  # "was" is English too
    assert question_languages("Will Germany ban Huawei?", ["en", "de"]) == ("en",)  # shared function word: the model
    assert set(question_languages("5G Poland", ["en", "de"])) == {"en", "de"}  # names only: both count


# -- through the pipeline and the CLI ------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001 -> (corpus, data, pipeline)
    """The five English articles and the German one, indexed with the real model and Chroma."""
    root = tmp_path_factory.mktemp("languages")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    shutil.copy(GERMAN, corpus / GERMAN_ID)
    pipeline = open_pipeline(corpus, root / "data", embedder, sync=True)
    return corpus, root / "data", pipeline


GERMAN_QUESTIONS = [
    # Answered from the article, but today's answerer leads with the headline, not the "410 Millionen
    # Euro" sentence: choosing the sentence is the answerer rework's (issue 11, point 2).
    ("Wie viel hat das neue Klärwerk in Schönerlinde gekostet?", ""),
    ("Wer ist Katrin Albers?", "Vorstandsvorsitzende Dr. Katrin Albers"),
    ("Wann beginnt der Regelbetrieb des Klärwerks?", "15. August"),
    ("Wie viele Kubikmeter Abwasser reinigt die Anlage täglich?", "180.000 Kubikmeter"),
    ("Was plant der Bezirk Pankow auf dem Gelände?", "Park mit Spielplätzen"),
    ("Um wie viel steigt der Abwasserpreis für eine Familie?", "38 Euro"),
]


@pytest.mark.parametrize(("question", "needle"), GERMAN_QUESTIONS)
def test_german_question_is_answered_from_the_german_article(mixed, question: str, needle: str) -> None:  # noqa: ANN001
    _, _, pipeline = mixed
    answer = pipeline.ask(question)
    assert not answer.refused, answer.text
    assert answer.sources and answer.sources[0].doc_id == GERMAN_ID
    assert needle in answer.text  # "" for the question above
    article = GERMAN.read_text()
    for source in answer.sources:
        if source.doc_id == GERMAN_ID:
            assert verify_quote(source.quote, article), source.quote
            for part in fragments(source.quote):
                assert not _CUT.search(part), part
    assert "2. [" not in answer.text and "Nr. [" not in answer.text  # no quote cut at "2. Juli" or "Nr. 12"


def test_english_question_still_finds_the_english_articles(mixed) -> None:  # noqa: ANN001
    _, _, pipeline = mixed
    answer = pipeline.ask("Which Czech agency is organising the Prague 5G security meeting?")
    assert not answer.refused and "NUKIB" in answer.text
    assert answer.sources[0].doc_id == "002_1422b7e4d913b162.txt"
    assert GERMAN_ID not in {s.doc_id for s in answer.sources}


def test_german_chunks_start_and_end_at_sentence_boundaries(mixed) -> None:  # noqa: ANN001
    _, _, pipeline = mixed
    chunks = pipeline.index.store.get_document(GERMAN_ID)
    assert chunks and {c.metadata["lang"] for c in chunks} == {"de"}
    starts = {s for s, _ in split_sentences(GERMAN.read_text(), "de")}
    article = GERMAN.read_text()
    for chunk in chunks:
        assert not _CUT.search(chunk.text.rstrip()), chunk.text[-40:]
        assert not chunk.text.startswith(("Juli", "12 an")), chunk.text[:40]
        assert any(article.startswith(sentences(chunk.text, "de")[0], s) for s in starts), chunk.text[:60]
    english = pipeline.index.store.get_document("000_320184e85fe372d2.txt")
    assert {c.metadata["lang"] for c in english} == {"en"}


def test_ask_json_answers_a_german_question(mixed) -> None:  # noqa: ANN001
    corpus, data, _ = mixed
    result = run_qabot("ask", "--json", "Wer hat das Verfahren wissenschaftlich begleitet?",
                       env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert not row["refused"] and "Prof. Dr. Martin Jekel" in row["answer"]
    assert row["sources"][0]["doc_id"] == GERMAN_ID
    assert all(verify_quote(s["quote"], GERMAN.read_text()) for s in row["sources"] if s["doc_id"] == GERMAN_ID)
