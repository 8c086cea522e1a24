"""The span reader: a small SQuAD-trained model that finds the answer inside a passage, or says none is there.

The model (MiniLM-L6 with a start/end head, trained by `training/reader/`, int8 ONNX) ships in
`rag/models/reader/` with its tokenizer, its settings (`reader.json`) and its model card. It runs with
onnxruntime and the `tokenizers` tokenizer, so answering never imports torch; it is loaded once, on the
first question, like a spaCy component.

How a pair is tokenized and how logits become a span are defined here once: the training code builds
its features and scores its checkpoints with these same functions.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..parallel_calls import ParallelCalls, calls_at_once

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

#: Where the shipped reader lives (inside the installed package).
PACKAGED_READER = Path(__file__).resolve().parent.parent / "models" / "reader"

#: Longest answer the reader may return, in wordpieces (SQuAD's answers: 95% are under 20).
MAX_ANSWER_TOKENS = 30
#: Candidate starts and ends looked at per window (the usual SQuAD decoding recipe).
TOP_CANDIDATES = 20


class ReaderUnavailable(RuntimeError):
    """The reader's files are missing or damaged; answers fall back to whole sentences."""


@dataclass(frozen=True)
class Window:
    """One tokenized question + passage window, as the model reads it."""

    pair: int  # which (question, passage) pair it comes from
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]  # character offsets into the passage ((0, 0) outside it)
    is_context: list[bool]


@dataclass(frozen=True)
class Span:
    """The best answer the reader found in one passage.

    `margin` is the best span's score minus the "no answer" score (logits): above the reader's
    calibrated `min_margin` it answers, below it the passage holds no answer to the question.
    """

    passage: int
    start: int  # character offsets into the passage
    end: int
    text: str
    score: float
    null_score: float

    @property
    def margin(self) -> float:
        return self.score - self.null_score


def encode_pairs(tokenizer: Any, questions: Sequence[str], passages: Sequence[str], *, max_len: int,
                 stride: int, max_question: int) -> list[Window]:
    """`[CLS] question [SEP] passage [SEP]` windows of at most `max_len` tokens.

    A passage longer than a window is read in overlapping windows (`stride` tokens shared), the way
    BERT readers read SQuAD; a question is cut to `max_question` tokens.
    """
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    q_enc = tokenizer.encode_batch(list(questions), add_special_tokens=False)
    p_enc = tokenizer.encode_batch(list(passages), add_special_tokens=False)
    windows: list[Window] = []
    for pair, (q, p) in enumerate(zip(q_enc, p_enc, strict=True)):
        q_ids = q.ids[:max_question]
        budget = max(8, max_len - len(q_ids) - 3)
        step = max(1, budget - stride)
        ids, offs = p.ids, p.offsets
        begin = 0
        while True:
            part = range(begin, min(begin + budget, len(ids)))
            head = [cls_id, *q_ids, sep_id]
            window_ids = head + [ids[i] for i in part] + [sep_id]
            windows.append(Window(
                pair=pair,
                input_ids=window_ids,
                token_type_ids=[0] * len(head) + [1] * (len(part) + 1),
                offsets=[(0, 0)] * len(head) + [tuple(offs[i]) for i in part] + [(0, 0)],
                is_context=[False] * len(head) + [True] * len(part) + [False],
            ))
            if part.stop >= len(ids):
                break
            begin += step
    return windows


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, is_context: Sequence[bool], cover: float = 1.0
              ) -> tuple[int, int, float, float] | None:
    """(start token, end token, span score, null score) of one window, or None if it has no context.

    The span is the model's best-scoring one, widened by `cover` < 1 to take in every overlapping
    candidate the model finds at least `cover` times as likely as its best (softmax over the candidate
    spans), up to MAX_ANSWER_TOKENS: when the model hesitates between "Toghun Temür" and "the 13-year-old
    Toghun Temür", the answer holds both readings. The score stays the best span's.
    """
    ctx = np.flatnonzero(np.asarray(is_context, dtype=bool))
    if ctx.size == 0:
        return None
    null = float(start_logits[0] + end_logits[0])
    s = start_logits[ctx]
    e = end_logits[ctx]
    top_s = np.argsort(-s)[:TOP_CANDIDATES]
    top_e = np.argsort(-e)[:TOP_CANDIDATES]
    candidates = [(float(s[i] + e[j]), int(i), int(j)) for i in top_s for j in top_e
                  if i <= j < i + MAX_ANSWER_TOKENS]
    if not candidates:
        return None
    candidates.sort(reverse=True)
    best, first, last = candidates[0]
    if cover < 1.0:
        floor = best + float(np.log(cover))  # a candidate this much less likely than the best (logits)
        for score, i, j in candidates[1:]:
            if score < floor:
                break
            if i <= last and j >= first and max(j, last) - min(i, first) < MAX_ANSWER_TOKENS:
                first, last = min(i, first), max(j, last)
    return int(ctx[first]), int(ctx[last]), best, null


def session_logits(session: Any, windows: Sequence[Window],
                   calls: ParallelCalls | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(start, end) logits of each window from an onnxruntime session of the reader.

    One window per call: int8 activations are scaled per call, so a window's scores must not depend on
    what else was in its batch (the same passage gives the same answer every time). With `calls`, a
    list question's passages are read a few at once, each call the same as alone (parallel_calls.py).
    """

    def run(w: Window) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray([w.input_ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.asarray([w.token_type_ids], dtype=np.int64)}
        start_logits, end_logits = session.run(["start_logits", "end_logits"], feeds)
        return start_logits[0], end_logits[0]

    return calls.map(run, windows) if calls is not None and len(windows) > 1 else [run(w) for w in windows]


def spans_of(windows: Sequence[Window], logits: Sequence[tuple[np.ndarray, np.ndarray]], passages: Sequence[str],
             cover: float = 1.0) -> list[Span | None]:
    """Each passage's best span over its windows (widened by `cover`, see best_span); its "no answer"
    score is its most confident window's."""
    best: list[Span | None] = [None] * len(passages)
    for w, (start_logits, end_logits) in zip(windows, logits, strict=True):
        found = best_span(start_logits, end_logits, w.is_context, cover)
        if found is None:
            continue
        i, j, score, null = found
        old = best[w.pair]
        if old is not None:
            null = min(null, old.null_score)
            if old.score >= score:
                best[w.pair] = Span(old.passage, old.start, old.end, old.text, old.score, null)
                continue
        start, end = w.offsets[i][0], w.offsets[j][1]
        best[w.pair] = Span(w.pair, start, end, passages[w.pair][start:end], score, null)
    return best


@dataclass(frozen=True)
class ReaderConfig:
    """What `reader.json` says about the shipped model: how it reads and when it answers."""

    max_len: int
    stride: int
    max_question: int
    min_margin: float  # calibrated on held-out training articles (see the model card)
    cover: float = 1.0  # how far a span widens to take in the readings the model hesitates between (best_span)

    @classmethod
    def read(cls, folder: Path) -> ReaderConfig:
        data = json.loads((folder / "reader.json").read_text())
        return cls(int(data["max_len"]), int(data["stride"]), int(data["max_question"]), float(data["min_margin"]),
                   float(data.get("cover", 1.0)))


class SpanReader:
    """Reads a question against passages and returns each passage's best span.

    Loaded lazily and once: `read()` loads the model on first use (~0.1 s), and a missing or damaged
    file raises `ReaderUnavailable` with one line saying which, every time it is asked (the caller logs
    it once and answers with whole sentences).
    """

    def __init__(self, folder: Path = PACKAGED_READER, *, threads: int = 1) -> None:
        self.folder = Path(folder)
        self.threads = threads
        self._calls = ParallelCalls(calls_at_once(threads), "qabot-reader")
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, ReaderConfig] | None = None
        self._error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SpanReader:
        """The reader of QABOT_READER_DIR (the packaged one when empty), on QABOT_TORCH_THREADS threads (at least 1)."""
        folder = Path(settings.reader_dir).expanduser() if settings.reader_dir else PACKAGED_READER
        return cls(folder, threads=max(1, settings.torch_threads))

    @property
    def config(self) -> ReaderConfig:
        return self._load()[2]

    def run_in_parallel(self, calls: int) -> None:
        """Read up to `calls` windows at once (a list question's passages), each call as it is alone."""
        self._calls = ParallelCalls(calls, "qabot-reader")

    def check(self) -> str | None:
        """None when the reader loads, else the one-line reason it does not (for `health`)."""
        try:
            self._load()
        except ReaderUnavailable as exc:
            return str(exc)
        return None

    def _load(self) -> tuple[Any, Any, ReaderConfig]:
        if self._loaded is not None:
            return self._loaded
        with self._lock:
            if self._loaded is not None:
                return self._loaded
            if self._error is not None:
                raise ReaderUnavailable(self._error)
            try:
                self._loaded = self._open()
            except ReaderUnavailable as exc:
                self._error = str(exc)
                raise
            return self._loaded

    def _open(self) -> tuple[Any, Any, ReaderConfig]:
        model = self.folder / "model.onnx"
        for needed in (model, self.folder / "tokenizer.json", self.folder / "reader.json"):
            if not needed.is_file():
                raise ReaderUnavailable(f"the reader model is missing ({needed}); {self._remedy()}")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            config = ReaderConfig.read(self.folder)
            tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.no_truncation()
            options = ort.SessionOptions()
            options.intra_op_num_threads = max(0, self.threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a truncated ONNX file, bad JSON: any of them means the same to a user
            raise ReaderUnavailable(f"the reader model in {self.folder} is damaged ({type(exc).__name__}); "
                                    f"{self._remedy()}") from exc
        return session, tokenizer, config

    def _remedy(self) -> str:
        if self.folder == PACKAGED_READER:
            return "reinstall qabot"
        return "fix QABOT_READER_DIR, or unset it to use the reader qabot ships"

    def read(self, question: str, passages: Sequence[str]) -> list[Span | None]:
        """The best span of each passage (None where a passage has nothing to read)."""
        session, tokenizer, config = self._load()
        if not passages:
            return []
        windows = encode_pairs(tokenizer, [question] * len(passages), list(passages), max_len=config.max_len,
                               stride=config.stride, max_question=config.max_question)
        return spans_of(windows, session_logits(session, windows, self._calls), passages, config.cover)
