"""Drop a client's connection without any HTTP response, under uvicorn.

ASGI has no message for "close the socket now": raising in the app makes uvicorn answer 500, and
returning without a response also makes it send a 500. So :class:`DropConnection` reaches the asyncio
transport of the connection through the ``receive`` callable uvicorn hands to the app (a bound method
of uvicorn's per-request cycle object, which holds ``transport`` in both its h11 and httptools
protocols), closes it, and waits until uvicorn has seen the disconnect, after which uvicorn sends
nothing and logs nothing. The client sees the connection close with no response bytes: httpx raises
``RemoteProtocolError("Server disconnected without sending a response.")``.
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class DropConnection(Response):
    """A "response" that closes the TCP connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = transport_of(receive)
        if transport is None:
            raise RuntimeError("Dropping a connection needs the emulator to run under uvicorn")
        transport.close()
        with anyio.move_on_after(5):
            while (await receive())["type"] != "http.disconnect":
                pass


def transport_of(receive: Receive) -> asyncio.BaseTransport | None:
    """The asyncio transport behind uvicorn's ``receive``, or None under another server."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None
