"""The gateway's reads of the store, against a real database (SQLite file, and PostgreSQL when it answers)."""

from __future__ import annotations

import asyncio

from sqlalchemy import event

from contracts.families import FamilyInfo
from contracts.store import Family as FamilyRow, make_engine
from gateway.records import Records


def test_families_are_read_by_one_query_however_many_requests_wait_for_them(empty_database_url: str) -> None:
    async def go() -> tuple[list[dict[str, FamilyInfo]], int, list[str]]:
        engine = make_engine(empty_database_url)
        reads: list[str] = []

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if "FROM families" in statement:
                reads.append(statement)

        records = Records(engine, family_ttl=0.0)  # every call finds the families stale
        try:
            async with records.sessions.begin() as db:
                db.add(FamilyRow(name="logreg", supervised=True, supports_update=False, methods=["predict"], params=["C"], fits=True))
            many = await asyncio.gather(*(records.families() for _ in range(32)))
            shared = len(reads)
            again = await records.families(refresh=True)  # asked for: a query of its own
            return [*many, again], shared, reads
        finally:
            await engine.dispose()

    answers, shared, reads = asyncio.run(go())
    assert shared == 1, reads
    assert len(reads) == 2, reads
    assert all(list(a) == ["logreg"] and a["logreg"].params == ("C",) for a in answers), answers
