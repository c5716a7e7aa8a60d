"""The `ml-server` command line: `run` (supervises a gateway and consumers for local use), `migrate`, `token`,
`delete-namespace`, and the client commands (`fit`, `predict`, `status`, `alias`, `import`)."""

from .main import main

__all__ = ["main"]
