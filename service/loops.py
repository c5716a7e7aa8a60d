"""The event loop of ml-server's processes: uvloop (libuv) where it is installed, asyncio's own elsewhere."""

from __future__ import annotations

import asyncio


def event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a process's entry point."""
    try:
        import uvloop
    except ImportError:  # Windows: uvloop is not installed there
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
