"""A small HTTP/1.1 client on asyncio streams, for webhook POSTs only.

Why not httpx: measured here, httpx's async client spends ~2.5 ms of CPU per request, which caps the
emulator at ~300 deliveries/s, below the receivers it is meant to load in benchmarks. A delivery needs
very little of HTTP (one POST with a known body, a status code, keep-alive), and the faults need
control of the raw connection anyway (close it mid-body, or before reading the answer).

Keep-alive connections are pooled per origin. An idle connection the server closed meanwhile is
detected before reuse; if a reused connection still dies before any answer byte, the request is sent
once more on a fresh one (as browsers do; the receiver deduplicates on ``event_id`` regardless).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

Origin = tuple[str, str, int]
_MAX_IDLE_PER_ORIGIN = 64
_MAX_HEADER_BYTES = 64 * 1024


class ConnectFailed(OSError):
    """The receiver could not be reached (refused, unreachable, TLS handshake failed)."""


class ConnectionLost(OSError):
    """The connection ended before a complete answer."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class HttpSender:
    """POST bodies to receivers; one instance per delivery worker loop."""

    def __init__(self, verify_tls: bool = True) -> None:
        self.verify_tls = verify_tls
        self._idle: dict[Origin, list[_Conn]] = defaultdict(list)
        self._ssl: ssl.SSLContext | None = None

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float, *, drop: str | None = None
    ) -> int:
        """Send; return the status code. ``drop="before"``: close after half the body and raise
        :class:`ConnectionLost`; ``drop="after"``: close once the status line arrived, return it."""
        parts = urlsplit(url)
        origin: Origin = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{origin[1]}]" if ":" in origin[1] else origin[1]
        if parts.port:
            host += f":{parts.port}"
        lines = [f"POST {target} HTTP/1.1", f"host: {host}", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        async with asyncio.timeout(timeout):
            while True:
                conn, reused = await self._connection(origin)
                try:
                    return await self._exchange(origin, conn, head, body, drop)
                except ConnectionLost as error:
                    conn.close()
                    if not (reused and error.args and error.args[0] == "no answer"):
                        raise
                except BaseException:
                    conn.close()
                    raise

    async def _exchange(self, origin: Origin, conn: _Conn, head: bytes, body: bytes, drop: str | None) -> int:
        if drop == "before":
            conn.writer.write(head + body[: len(body) // 2])
            await conn.writer.drain()
            conn.close()
            raise ConnectionLost("closed mid-request")
        conn.writer.write(head + body)
        try:
            await conn.writer.drain()
            status_line = await conn.reader.readline()
        except (ConnectionError, OSError) as error:
            raise ConnectionLost("no answer") from error
        if not status_line:
            raise ConnectionLost("no answer")
        version, status = _parse_status(status_line)
        if drop == "after":
            conn.close()
            return status
        headers = await _read_headers(conn.reader)
        keep_alive = await _read_body(conn.reader, headers, status)
        if keep_alive and version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower():
            self._release(origin, conn)
        else:
            conn.close()
        return status

    async def _connection(self, origin: Origin) -> tuple[_Conn, bool]:
        idle = self._idle[origin]
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn, True
            conn.close()
        scheme, hostname, port = origin
        try:
            reader, writer = await asyncio.open_connection(
                hostname, port, ssl=self._context() if scheme == "https" else None, limit=_MAX_HEADER_BYTES
            )
        except (OSError, ssl.SSLError) as error:
            raise ConnectFailed(str(error) or type(error).__name__) from error
        return _Conn(reader, writer), False

    def _release(self, origin: Origin, conn: _Conn) -> None:
        idle = self._idle[origin]
        if len(idle) < _MAX_IDLE_PER_ORIGIN:
            idle.append(conn)
        else:
            conn.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            if not self.verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        return self._ssl

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _parse_status(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionLost("malformed status line")
    return parts[0], int(parts[1])


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionLost("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int) -> bool:
    """Read and discard the answer's body; True when the connection can be reused."""
    try:
        if status in (204, 304) or 100 <= status < 200:
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                await reader.readexactly(size + 2)  # data and its CRLF; the last chunk is "0\r\n\r\n"
                if size == 0:
                    return True
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
            return True
        await reader.read()  # no length: the body ends with the connection
        return False
    except (asyncio.IncompleteReadError, ValueError) as error:
        raise ConnectionLost("connection closed in the body") from error
