"""The broker floor: an echo RPC server on the same RabbitMQ, in a process of its own.

    python -m benchmarks.echo NAMESPACE

Declares `NAMESPACE.echo` (an exchange and a queue, both auto-delete), answers
every message with its own body on its `reply_to`, prints `ready` once it
consumes, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from .common import BROKER_URL


def exchange_name(namespace: str) -> str:
    return f"{namespace}.echo"


ROUTING_KEY = "echo"


async def echo_server(namespace: str) -> None:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    connection = await aio_pika.connect(BROKER_URL, client_properties={"connection_name": f"bench echo {namespace}"})
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=32)
    exchange = await channel.declare_exchange(exchange_name(namespace), aio_pika.ExchangeType.DIRECT, auto_delete=True)
    queue = await channel.declare_queue(exchange_name(namespace), auto_delete=True)
    await queue.bind(exchange, ROUTING_KEY)
    reply_channel = await connection.channel(publisher_confirms=False)

    async def on_message(message: AbstractIncomingMessage) -> None:
        await reply_channel.default_exchange.publish(
            aio_pika.Message(message.body, correlation_id=message.correlation_id), routing_key=message.reply_to or ""
        )
        await message.ack()

    await queue.consume(on_message)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await connection.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.echo NAMESPACE", file=sys.stderr)
        return 2
    asyncio.run(echo_server(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
