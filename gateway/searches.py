"""Hyperparameter searches as a resource (`contracts/searches.py` says what a search is).

    POST   /families/{family}/searches   the training data as a fit takes it, and the search: 202 {id}
    GET    /searches/{id}                 state and leaderboard
    DELETE /searches/{id}                 cancel: queued candidates are dropped, running ones' results too

Each candidate is queued as a fit of the search's candidates model, so the
candidates spread over every consumer of the family and have every guarantee a
fit has (a consumer killed mid-fit: the job is redelivered). A search moves on
(`advance`) when a candidate or its refit finishes, seen on the event feed,
and whenever it is read: when every candidate is finished the best is fitted
again as a new version of `name`, and when that is done it gets `alias`. Every
move is a conditional update of the search's state, so several gateways may
watch the same search.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import web
from marshmallow import ValidationError
from sqlalchemy import or_, select, update

from contracts.errors import InvalidInput, NotFound
from contracts.evaluation import KEY as EVALUATION
from contracts.families import PREPROCESSING
from contracts.schemas import POSITIVE_ID
from contracts.searches import (
    FINISHED,
    OWN_SCORE,
    SearchAccepted,
    SearchParams,
    SearchRequest,
    SearchResponse,
    SearchState,
    candidate_row,
    candidates,
    rank,
)
from contracts.status import Backend, JobKind, Status
from contracts.store import Payload, Search, utcnow

from . import requests, service
from .events import EVENTS
from .routes import family_of
from .state import RECORDS, REGISTRY

log = logging.getLogger(__name__)

_ACCEPTED = SearchAccepted()
_SEARCH = SearchResponse()
_ENDED = (Status.DONE, Status.FAILED)


async def create(request: web.Request) -> web.Response:
    """Queue one fit per candidate: `202 {id, state, total, candidates_key}`."""
    family = await family_of(request)
    family.check_fits()
    req = await requests.training(request, "fit", SearchRequest(), SearchParams)
    params = req.params
    family.check_target(req.has_y)
    space = params["param_grid"] or params["param_distributions"]
    if EVALUATION in space or PREPROCESSING in space:
        raise InvalidInput(f"the search's parameters are the estimator's: not {EVALUATION} or {PREPROCESSING}", fields={"param_grid": ["estimator parameters only"]})
    family.check_modkwargs({**params["modkwargs"], **dict.fromkeys(space)})
    tried = candidates(params)
    scoring = params["scoring"] or OWN_SCORE
    body = await req.encoded()
    app, actor = request.app, request.get("actor")
    records = app[RECORDS]
    spec = {
        "candidates": tried,
        "cv": params["cv"],
        "scoring": scoring,
        "modkwargs": {k: v for k, v in params["modkwargs"].items() if k != EVALUATION},
        "algkwargs": params["algkwargs"],
        "backend": params["backend"].value if params["backend"] is not None else None,
    }
    async with records.sessions.begin() as db:
        search = Search(family=family.name, name=params["name"], alias=params["alias"], state=SearchState.RUNNING.value,
                        spec=spec, candidates="", actor=actor, created_at=utcnow())
        db.add(search)
        await db.flush()
        search_id = search.id
    spec["payload_id"] = await records.store_payload(None, body)  # for the winner's refit
    key = ""
    try:
        for params_i in tried:
            modkwargs = {**spec["modkwargs"], **params_i, EVALUATION: {"cv": params["cv"], "scoring": scoring}}
            fit = requests.Training(
                {"name": f"search {search_id}: {params['name']}", "modkwargs": modkwargs, "algkwargs": params["algkwargs"],
                 "retrain": True, "backend": params["backend"]},
                req.has_y, req.x, req.y, parquet=body,
            )
            key, _, _ = await service.fit(app, family, fit, actor)
            if not spec.get("candidates_key"):
                spec["candidates_key"] = key
                async with records.sessions.begin() as db:
                    await db.execute(update(Search).where(Search.id == search_id).values(candidates=key, spec=spec))
    except Exception as e:
        # Not every candidate could be queued (the broker or the store went away): no half search is left running.
        await _abandon(app, search_id, f"not every candidate could be queued: {e}")
        raise
    log.info("search %d: %d %s candidates queued as versions of %s", search_id, len(tried), family.name, key)
    return service.respond(_ACCEPTED.dump({"id": search_id, "state": SearchState.RUNNING.value, "total": len(tried), "candidates_key": key}), 202)


async def read(request: web.Request) -> web.Response:
    """The search's state and leaderboard, best first."""
    search = await advance(request.app, _id(request))
    request["family"] = search.family
    return service.respond(_SEARCH.dump(await _body(request.app, search)))


async def cancel(request: web.Request) -> web.Response:
    """Cancel: candidates not finished are failed (a queued one is never fitted, a running one's result is
    dropped), and no winner is refitted. A finished search is answered as it is."""
    app, search_id = request.app, _id(request)
    await _abandon(app, search_id, "cancelled", SearchState.CANCELLED)
    search = await advance(app, search_id)
    request["family"] = search.family
    return service.respond(_SEARCH.dump(await _body(app, search)))


async def _abandon(app: web.Application, search_id: int, error: str, state: SearchState = SearchState.FAILED) -> None:
    """End a search that is not finished: its candidates not finished are failed, its data dropped."""
    records = app[RECORDS]
    async with records.sessions.begin() as db:
        search = await _get(db, search_id)
        moved = await db.execute(
            update(Search)
            .where(Search.id == search_id, Search.state.in_([SearchState.RUNNING.value, SearchState.REFITTING.value]))
            .values(state=state.value, finished_at=utcnow(), error=error)
        )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return
    if search.candidates:
        _, _, versions = await records.versions(search.candidates, None, 10_000, 0)
        open_ids = [s.id for s, _ in versions if s.status not in _ENDED]
        await records.cancel(open_ids, f"{state.value} with search {search_id}")
    else:
        open_ids = []
    await _drop_payload(app, search.spec)
    log.info("search %d %s: %d candidates not finished", search_id, state.value, len(open_ids))


# ---- moving a search on ---------------------------------------------------------------------


async def advance(app: web.Application, search_id: int) -> Search:
    """Refit the winner once every candidate is finished; alias it once the refit is done."""
    records = app[RECORDS]
    async with records.sessions() as db:
        search = await _get(db, search_id)
    if search.state == SearchState.RUNNING.value and search.candidates:
        rows = await _leaderboard(app, search)
        if len(rows) == len(search.spec["candidates"]) and all(r["status"] in ("done", "failed") for r in rows):
            best = rows[0] if rows and rows[0]["rank"] == 1 else None
            if best is None:
                errors = sorted({r["error"] or "not scored" for r in rows})
                await _finish(app, search, SearchState.FAILED, f"no candidate was scored: {'; '.join(errors)[:2000]}")
            elif await _move(app, search.id, SearchState.RUNNING, SearchState.REFITTING, best_version=best["version"]):
                await _refit(app, search, best)
        async with records.sessions() as db:
            search = await _get(db, search_id)
    if search.state == SearchState.REFITTING.value and search.result_key and search.result_version:
        _, session = await records.version_status(search.result_key, search.result_version)
        if session.status is Status.DONE:
            if search.alias:
                model, _ = await app[REGISTRY].set_alias(search.result_key, search.alias, search.result_version, search.actor)
                await service.alias_event(app, model, search.alias, search.result_version)
            await _finish(app, search, SearchState.DONE, None)
        elif session.status is Status.FAILED:
            await _finish(app, search, SearchState.FAILED, f"the winner's refit failed: {session.error}")
        async with records.sessions() as db:
            search = await _get(db, search_id)
    return search


async def _refit(app: web.Application, search: Search, best: dict[str, Any]) -> None:
    """The best candidate fitted on every row as a new version of `name` (with the same folds' scores)."""
    records, spec = app[RECORDS], search.spec
    async with records.sessions() as db:
        body = (await db.execute(select(Payload.data).where(Payload.id == spec["payload_id"]))).scalar_one_or_none()
    if body is None:  # dropped by a cancel that came first
        await _move(app, search.id, SearchState.REFITTING, SearchState.FAILED, error="the search's data is gone", finished_at=utcnow())
        return
    modkwargs = {**spec["modkwargs"], **best["params"], EVALUATION: {"cv": spec["cv"], "scoring": spec["scoring"]}}
    stored = {"modkwargs": modkwargs, "algkwargs": spec["algkwargs"], "name": search.name, "retrain": True, "backend": spec["backend"], "search": search.id}
    key = service.model_key(search.family, search.name, None, None, {}, None)
    session, _ = await records.submit_fit(search.family, key, search.name, stored, True, search.actor)
    async with records.sessions.begin() as db:
        await db.execute(update(Search).where(Search.id == search.id).values(result_key=key, result_version=session.version))
    backend = Backend(spec["backend"]) if spec["backend"] else None
    await service.publish(app, search.family, key, session, JobKind.FIT, body, modkwargs, spec["algkwargs"], backend)
    await _drop_payload(app, spec)
    log.info("search %d: candidate v%d won; refitting as %s v%d", search.id, best["version"], key, session.version)


async def _move(app: web.Application, search_id: int, before: SearchState, after: SearchState, **values: Any) -> bool:
    async with app[RECORDS].sessions.begin() as db:
        res = await db.execute(update(Search).where(Search.id == search_id, Search.state == before.value).values(state=after.value, **values))
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def _finish(app: web.Application, search: Search, state: SearchState, error: str | None) -> None:
    if await _move(app, search.id, SearchState(search.state), state, error=error, finished_at=utcnow()):
        await _drop_payload(app, search.spec)
        log.info("search %d %s%s", search.id, state.value, f": {error}" if error else "")


async def _drop_payload(app: web.Application, spec: dict[str, Any]) -> None:
    if spec.get("payload_id"):
        await app[RECORDS].drop_payload(spec["payload_id"])


# ---- reading ----------------------------------------------------------------------------------


async def _leaderboard(app: web.Application, search: Search) -> list[dict[str, Any]]:
    if not search.candidates:
        return []
    _, _, versions = await app[RECORDS].versions(search.candidates, None, 10_000, 0)
    tried = search.spec["candidates"]
    rows = []
    for session, artifact in sorted(versions, key=lambda v: v[0].version):
        if session.version > len(tried):
            continue
        scores = (artifact.meta or {}).get("scores") if artifact is not None else None
        rows.append(candidate_row(tried[session.version - 1], session.version, session.status, scores, search.spec["scoring"], session.worker, session.error))
    return rank(rows)


async def _body(app: web.Application, search: Search) -> dict[str, Any]:
    board = await _leaderboard(app, search)
    best = next((r for r in board if r["version"] == search.best_version), None)
    return {
        "id": search.id,
        "family": search.family,
        "name": search.name,
        "alias": search.alias,
        "state": search.state,
        "scoring": search.spec["scoring"],
        "cv": search.spec["cv"],
        "candidates_key": search.candidates,
        "total": len(search.spec["candidates"]),
        "finished": sum(1 for r in board if r["status"] in ("done", "failed")),
        "best": best or (board[0] if board and board[0]["rank"] == 1 else None),
        "model_key": search.result_key,
        "version": search.result_version,
        "error": search.error,
        "created_at": search.created_at,
        "finished_at": search.finished_at,
        "leaderboard": board,
    }


async def _get(db: Any, search_id: int) -> Search:
    search = (await db.execute(select(Search).where(Search.id == search_id))).scalar_one_or_none()
    if search is None:
        raise NotFound(f"no search {search_id}", fields={"id": ["unknown"]})
    return cast("Search", search)


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    try:
        value = int(raw)
        POSITIVE_ID(value)
    except (ValueError, ValidationError) as e:
        raise NotFound(f"no search {raw!r}", fields={"id": ["not a search id"]}) from e
    return value


# ---- following the candidates ------------------------------------------------------------------


async def _follow(app: web.Application) -> None:
    """Move searches on as their candidates and refits finish (events of any gateway's consumers)."""
    with app[EVENTS].watch_all(follower=True) as inbox:
        while (event := await inbox.get()) is not None:
            if event.get("status") not in (Status.DONE.value, Status.FAILED.value):
                continue
            key = event["model_key"]
            try:
                async with app[RECORDS].sessions() as db:
                    ids = (await db.execute(
                        select(Search.id).where(
                            Search.state.in_([SearchState.RUNNING.value, SearchState.REFITTING.value]),
                            or_(Search.candidates == key, Search.result_key == key),
                        )
                    )).scalars().all()
                for search_id in ids:
                    await advance(app, search_id)
            except Exception:  # noqa: BLE001 - the next event or read moves it on
                log.exception("search of model %s not moved on", key)


async def _following(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_follow(app))
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def setup(app: web.Application) -> None:
    """The follower that moves searches on; call after `events.setup` (it reads the event hub)."""
    app.cleanup_ctx.append(_following)


__all__ = ["FINISHED", "advance", "cancel", "create", "read", "setup"]
