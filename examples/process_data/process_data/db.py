"""The application's table: one row per submitted job, written by the web app and the task."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, String, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from process_data import settings

__all__ = ["Base", "Job", "Session", "create_tables", "engine"]


class Base(DeclarativeBase):
    pass


class Job(Base):
    """A submitted document; ``id`` is also the id of the task that processes it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    payload: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    outcome: Mapped[Any] = mapped_column(JSON, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: dt.datetime.now(dt.UTC)
    )
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _make_engine() -> Engine:
    made = create_engine(settings.DATABASE_URL, pool_pre_ping=True)
    if settings.DATABASE_SCHEMA:
        # Every connection works in the configured schema, for the app's table as well.
        @event.listens_for(made, "connect")
        def _set_search_path(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f'SET search_path TO "{settings.DATABASE_SCHEMA}"')
            dbapi_connection.commit()

    return made


engine = _make_engine()
Session = sessionmaker(engine, expire_on_commit=False)


def create_tables() -> None:
    """Create the ``jobs`` table if it is missing (idempotent; run by every process at start)."""
    Base.metadata.create_all(engine)
