"""Outgoing HTTP over wasi:http for Syncline connector plugins.

`request(method, url, headers, body)` sends one request and returns
(status, headers, body). The host lets it through only to the hosts the
plugin's `allowed-hosts` names; anything else fails as an error here.
"""
import asyncio
from urllib.parse import urlsplit

import poll_loop
from poll_loop import PollLoop, Sink, Stream
from wit_world.imports.types import (Fields, Method_Get, Method_Other, Method_Post, Method_Put,
                                     OutgoingRequest, Scheme_Http, Scheme_Https)

_METHODS = {"GET": Method_Get, "POST": Method_Post, "PUT": Method_Put}


async def _send(method: str, url: str, headers: list[tuple[str, str]], body: bytes | None):
    parts = urlsplit(url)
    req = OutgoingRequest(Fields.from_list([(k, v.encode()) for k, v in headers]))
    req.set_method(_METHODS[method]() if method in _METHODS else Method_Other(method))
    req.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    req.set_authority(parts.netloc)
    req.set_path_with_query(parts.path + ("?" + parts.query if parts.query else ""))
    out = req.body()
    sink = Sink(out)
    if body:
        await sink.send(body)
    sink.close()
    resp = await poll_loop.send(req)
    status = resp.status()
    answer = {k: v.decode(errors="replace") for k, v in resp.headers().entries()}
    stream = Stream(resp.consume())
    chunks = []
    while (chunk := await stream.next()) is not None:
        chunks.append(chunk)
    return status, answer, b"".join(chunks)


def request(method: str, url: str, headers: list[tuple[str, str]] = (), body: bytes | None = None):
    """Sends one request and waits for the whole answer: (status, headers, body)."""
    loop = PollLoop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_send(method, url, list(headers), body))
    finally:
        loop.close()
