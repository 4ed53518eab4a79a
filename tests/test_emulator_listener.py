"""The emulator command's listening socket lets asyncio turn Nagle's algorithm off on each connection.

With Nagle on, each answer (written as headers, then body) waited some 40 ms for the client's delayed
ACK: the plan benchmark at 20 ms of injected latency ran at 60 ms per call. asyncio sets TCP_NODELAY
only on connections accepted from a socket made with an explicit IPPROTO_TCP.
"""

from __future__ import annotations

import asyncio
import socket

from reconciler.cli.emulator import _listen


def test_the_listener_is_made_with_an_explicit_tcp_protocol() -> None:
    listener = _listen("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockname()[1] > 0
    finally:
        listener.close()


def test_connections_accepted_under_asyncio_have_nagle_off() -> None:
    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = _listen("127.0.0.1", 0)
        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
