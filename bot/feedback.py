"""The bot's answer log and 👍/👎 votes, in SQLite under the data folder.

Every answer the bot posts is logged (question, answer, sources) with the Discord channel
it lives in; that log is also the conversation history of a thread or DM. Votes refer to
an answer by id and identify the voter only by a salted SHA-256 of their user id: the salt
is random per install, so the hashes cannot be matched against other installs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rag.settings import Settings
from rag.types import Answer, Turn

VOTES = ("up", "down")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    channel_id INTEGER,          -- the thread or DM the answer continues; NULL: not a conversation
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,       -- JSON list, as in `qabot ask --json`
    backend TEXT NOT NULL,
    refused INTEGER NOT NULL,
    created_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_channel ON answers (channel_id, created_utc);
CREATE TABLE IF NOT EXISTS answer_messages (
    message_id INTEGER PRIMARY KEY,
    answer_id TEXT NOT NULL REFERENCES answers (id)
);
CREATE TABLE IF NOT EXISTS votes (
    answer_id TEXT NOT NULL REFERENCES answers (id),
    user_hash TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    voted_utc TEXT NOT NULL,
    PRIMARY KEY (answer_id, user_hash)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LoggedAnswer:
    id: str
    channel_id: int | None
    question: str
    answer: str
    created_utc: str


class FeedbackStore:
    """SQLite file of answers and votes; safe to call from several threads (one connection per call)."""

    FILENAME = "feedback.sqlite3"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('salt', ?)", (secrets.token_hex(16),))
            self._salt = db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackStore:
        return cls(settings.data_dir / cls.FILENAME)

    def __repr__(self) -> str:
        return f"FeedbackStore({str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            with db:  # one transaction, committed on success
                yield db

    def user_hash(self, user_id: int) -> str:
        return hashlib.sha256(f"{self._salt}:{user_id}".encode()).hexdigest()

    # ------------------------------------------------------------------------------ answers
    def record_answer(self, answer: Answer, *, channel_id: int | None = None) -> str:
        """Log an answer before it is posted; returns the id its vote buttons carry."""
        answer_id = uuid.uuid4().hex
        sources = json.dumps([s.to_json() for s in answer.sources], ensure_ascii=False)
        with self._connect() as db:
            db.execute(
                "INSERT INTO answers (id, channel_id, question, answer, sources, backend, refused, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, channel_id, answer.question, answer.text, sources, answer.backend, int(answer.refused), _now()),
            )
        return answer_id

    def link_messages(self, answer_id: str, message_ids: Sequence[int], *, channel_id: int | None = None) -> None:
        """Remember which Discord messages show an answer (and, once known, its thread)."""
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO answer_messages (message_id, answer_id) VALUES (?, ?)",
                [(int(m), answer_id) for m in message_ids],
            )
            if channel_id is not None:
                db.execute("UPDATE answers SET channel_id = ? WHERE id = ?", (channel_id, answer_id))

    def answer_for_message(self, message_id: int) -> LoggedAnswer | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT a.id, a.channel_id, a.question, a.answer, a.created_utc FROM answer_messages m"
                " JOIN answers a ON a.id = m.answer_id WHERE m.message_id = ?",
                (message_id,),
            ).fetchone()
        return LoggedAnswer(*row) if row else None

    def history(
        self, channel_id: int, *, limit: int = 6, max_age: timedelta | None = None, until_answer: str | None = None
    ) -> list[Turn]:
        """The last `limit` questions and answers in a thread or DM, oldest first (up to `until_answer`)."""
        query = "SELECT question, answer FROM answers WHERE channel_id = ?"
        params: list[object] = [channel_id]
        if max_age is not None:
            query += " AND created_utc >= ?"
            params.append((datetime.now(UTC) - max_age).isoformat(timespec="seconds"))
        if until_answer is not None:
            query += " AND rowid <= (SELECT rowid FROM answers WHERE id = ?)"
            params.append(until_answer)
        query += " ORDER BY rowid DESC LIMIT ?"
        params.append(limit)
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [Turn(question=q, answer=a) for q, a in reversed(rows)]

    # -------------------------------------------------------------------------------- votes
    def record_vote(self, answer_id: str, vote: str, user_id: int) -> bool:
        """Store (or change) one user's vote on an answer; False if the answer is unknown."""
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, not {vote!r}")
        with self._connect() as db:
            if db.execute("SELECT 1 FROM answers WHERE id = ?", (answer_id,)).fetchone() is None:
                return False
            db.execute(
                "INSERT INTO votes (answer_id, user_hash, vote, voted_utc) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (answer_id, user_hash) DO UPDATE SET vote = excluded.vote, voted_utc = excluded.voted_utc",
                (answer_id, self.user_hash(user_id), vote, _now()),
            )
        return True

    def iter_feedback(self) -> Iterator[dict[str, object]]:
        """Every vote with the question, answer and sources it was about, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT v.voted_utc, v.vote, v.user_hash, a.id, a.question, a.answer, a.sources, a.backend, a.refused"
                " FROM votes v JOIN answers a ON a.id = v.answer_id ORDER BY v.voted_utc, v.rowid"
            ).fetchall()
        for voted, vote, user, answer_id, question, answer, sources, backend, refused in rows:
            yield {
                "time": voted,
                "vote": vote,
                "user": user,
                "answer_id": answer_id,
                "question": question,
                "answer": answer,
                "sources": json.loads(sources),
                "backend": backend,
                "refused": bool(refused),
            }

    def export_jsonl(self) -> Iterator[str]:
        """One JSON object per line (no newline at the end of each), for `qabot feedback export`."""
        for record in self.iter_feedback():
            yield json.dumps(record, ensure_ascii=False)
