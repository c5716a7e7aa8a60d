"""What every ml-server process needs besides the wire contracts: logging, its event loop, the store's schema.

The gateway, the consumers and the command line configure logging once at
their entry point (`logs`), run on `loops.event_loop`, and check (or, for
`ml-server migrate`, apply) the store's migrations (`schema`).
"""
