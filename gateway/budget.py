"""How many request body bytes one gateway process reads and decodes at once.

A request's body is read whole and then decoded (JSON frames to arrays,
Parquet to Arrow), so a hundred large requests arriving together would hold a
hundred bodies and their decoded copies: the out-of-memory killer's work.
`DecodeBudget` admits a body only while the bodies of every request being
read or decoded stay within ML_SERVER_DECODE_BUDGET bytes; a request that does
not fit gets `503` with `Retry-After` at once, before its body is read. A
request holds its share (its Content-Length, or what has come of a chunked
body) until its handler has answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from contracts.errors import PayloadTooLarge, Unavailable

log = logging.getLogger(__name__)

# Seconds a refused request is told to wait: bodies are decoded in well under that.
RETRY_AFTER = 1
_HELD = "decode_budget_held"


class DecodeBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self, request: web.Request, size: int, what: str) -> None:
        """Count `size` more bytes of `request`'s body against the budget; 503 (413 for a body larger than the whole
        budget) when they don't fit. The gateway's event loop is the only caller: no lock."""
        if size > self.total:
            raise PayloadTooLarge(
                f"{what} body of {size} bytes is more than this gateway decodes at once ({self.total}, ML_SERVER_DECODE_BUDGET)"
            )
        if self.used + size > self.total:
            log.warning("decode budget full (%d of %d bytes held): a %s body of %d bytes refused", self.used, self.total, what, size)
            raise Unavailable(
                f"the gateway is decoding {self.used} bytes of other requests; this {what} body of {size} bytes does not fit "
                f"in its {self.total}-byte budget (ML_SERVER_DECODE_BUDGET): retry after {RETRY_AFTER}s",
                retry_after=RETRY_AFTER,
            )
        self.used += size
        request[_HELD] = request.get(_HELD, 0) + size

    def release(self, request: web.Request) -> None:
        held = request.get(_HELD, 0)
        if held:
            self.used -= held
            request[_HELD] = 0


BUDGET = web.AppKey("decode_budget", DecodeBudget)


@web.middleware
async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Give back what the request's body held once its handler has answered (or failed)."""
    try:
        return await handler(request)
    finally:
        request.app[BUDGET].release(request)
