"""TLS terminated inside uvicorn's own server, on pyOpenSSL memory BIOs.

uvicorn can only use Python's ssl module, which cannot negotiate
X25519MLKEM768 here. Rather than a TLS front that pipes bytes to uvicorn on a
private socket (a second hop, and the client's address would have to be passed
in a header and trusted), each accepted connection gets a TLSServerProtocol:
it runs the handshake on memory BIOs, then hands the plaintext to uvicorn's
HTTP protocol through a PlaintextTransport. One process, one event loop, and
uvicorn still sees the real peer address (the transport's `peername`), so the
API's throttles keep keying on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

log = logging.getLogger(__name__)

# Plaintext read from OpenSSL per call, and TLS records taken from its output BIO.
CHUNK = 65536
# What a plain HTTP request to the HTTPS port starts with (a TLS handshake starts with 0x16).
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ", b"TRACE ")
_PLAIN_HTTP_BODY = b"This port speaks HTTPS only: use https:// instead of http:// here.\r\n"
PLAIN_HTTP_REPLY = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY))


def https_protocol(context: SSL.Context, handshake_timeout: float,
                   http_protocol: Callable[..., asyncio.Protocol] | None = None
                   ) -> Callable[..., asyncio.Protocol]:
    """For uvicorn.Config(http=...): each connection terminates TLS with `context`
    and speaks HTTP with `http_protocol` (uvicorn's default: httptools, else h11).
    uvicorn calls the result with its own keyword arguments (config, server_state,
    app_state, _loop), which are passed on to the HTTP protocol."""
    if http_protocol is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        http_protocol = AutoHTTPProtocol
    return functools.partial(TLSServerProtocol, context, handshake_timeout, http_protocol)


class TLSServerProtocol(asyncio.Protocol):
    """One accepted connection: TLS records on the socket, plaintext to `http`."""

    def __init__(self, context: SSL.Context, handshake_timeout: float,
                 http_protocol: Callable[..., asyncio.Protocol], **http_arguments: Any) -> None:
        self._tls = SSL.Connection(context, None)  # no socket: memory BIOs
        self._tls.set_accept_state()
        self._handshake_timeout = handshake_timeout
        self._make_http = functools.partial(http_protocol, **http_arguments)
        self.http: asyncio.Protocol | None = None  # made once the handshake is done
        self._raw: asyncio.Transport | None = None
        self._plain: PlaintextTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._seen_bytes = False
        self._reading_paused = False

    # Towards the socket.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport  # type: ignore[assignment]  # asyncio's or uvloop's stream
        # Slowloris: a peer that starts a handshake and never finishes it is dropped.
        self._timer = asyncio.get_running_loop().call_later(
            self._handshake_timeout, self._handshake_timed_out)

    def data_received(self, data: bytes) -> None:
        raw = self._raw
        assert raw is not None
        if raw.is_closing():
            return
        if not self._seen_bytes:
            self._seen_bytes = True
            if data.startswith(HTTP_METHODS):
                raw.write(PLAIN_HTTP_REPLY)
                raw.close()
                return
        self._tls.bio_write(data)
        if self.http is None and not self._handshake():
            return
        self._read_plaintext()

    def eof_received(self) -> bool | None:
        # The peer closed TCP without close_notify; the HTTP protocol decides, as on plain TCP.
        return self.http.eof_received() if self.http is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.http is not None:
            self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.http is not None:
            self.http.pause_writing()

    def resume_writing(self) -> None:
        if self.http is not None:
            self.http.resume_writing()

    # The handshake.

    def _handshake(self) -> bool:
        """Advance the handshake; True once it is done and the HTTP protocol is made."""
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as error:
            self._flush()  # the alert, so the client learns why
            self._drop(f"TLS handshake failed: {error}")
            return False
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        self._plain = PlaintextTransport(self)
        self.http = self._make_http()
        self.http.connection_made(self._plain)
        return True

    def _handshake_timed_out(self) -> None:
        if self.http is None:
            self._drop(f"no TLS handshake within {self._handshake_timeout:g}s")

    def _drop(self, why: str) -> None:
        assert self._raw is not None
        log.debug("closing %s: %s", self._raw.get_extra_info("peername"), why)
        self._raw.close()

    # Plaintext both ways.

    def _read_plaintext(self) -> None:
        assert self._raw is not None
        while self.http is not None and not self._reading_paused and not self._raw.is_closing():
            try:
                data = self._tls.recv(CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify: the client is done sending
                assert self._plain is not None
                if not self.http.eof_received():
                    self._plain.close()
                return
            except SSL.Error as error:
                self._drop(f"TLS error: {error}")
                return
            self.http.data_received(data)
        self._flush()  # e.g. session tickets, key updates

    def send(self, data: bytes) -> None:
        """Encrypt `data` and write the records to the socket."""
        self._tls.sendall(data)  # memory BIO: never blocks, takes it all
        self._flush()

    def close(self) -> None:
        """close_notify, then close the socket once what is buffered is written."""
        assert self._raw is not None
        try:
            self._tls.shutdown()
        except SSL.Error as error:  # e.g. the connection broke mid-record
            log.debug("TLS shutdown: %s", error)
        self._flush()
        self._raw.close()

    def pause_reading(self) -> None:
        assert self._raw is not None
        self._reading_paused = True
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        assert self._raw is not None
        self._reading_paused = False
        self._raw.resume_reading()
        # Records that arrived before the pause wait in OpenSSL's input BIO (and
        # decrypted bytes in its buffer); no socket read will announce them, so
        # deliver them now (not from inside the caller's own call).
        asyncio.get_running_loop().call_soon(self._read_plaintext)

    def _flush(self) -> None:
        assert self._raw is not None
        records = []
        while True:
            try:
                records.append(self._tls.bio_read(CHUNK))
            except SSL.WantReadError:
                break
        if records and not self._raw.is_closing():
            self._raw.write(b"".join(records))

    @property
    def raw(self) -> asyncio.Transport:
        assert self._raw is not None
        return self._raw

    @property
    def tls(self) -> SSL.Connection:
        return self._tls


class PlaintextTransport(asyncio.Transport):
    """What uvicorn's HTTP protocol writes to and reads through: plaintext over
    the connection's TLS. Extra info comes from the socket's transport (peername,
    sockname, socket), plus `sslcontext` and `ssl_object`, so uvicorn sets the
    scheme to https."""

    def __init__(self, connection: TLSServerProtocol) -> None:
        super().__init__()
        self._connection = connection
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._connection.tls.get_context()
        if name == "ssl_object":
            return self._connection.tls
        return self._connection.raw.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return
        self._connection.send(bytes(data))

    def close(self) -> None:
        if self.is_closing():
            return
        self._closing = True
        self._connection.close()

    def abort(self) -> None:
        self._closing = True
        self._connection.raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._connection.raw.is_closing()

    def pause_reading(self) -> None:
        self._connection.pause_reading()

    def resume_reading(self) -> None:
        self._connection.resume_reading()

    def is_reading(self) -> bool:
        return self._connection.raw.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._connection.http = protocol  # type: ignore[assignment]  # uvicorn's websocket upgrade

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._connection.http is not None
        return self._connection.http

    # TLS adds a few dozen bytes per record; the socket's buffer is the one that fills.
    def get_write_buffer_size(self) -> int:
        return self._connection.raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._connection.raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._connection.raw.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False  # TLS 1.3 has no half-close that HTTP/1.1 needs
