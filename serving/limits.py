"""Request bounds enforced before any route runs: the body's size and the request id's form."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # what a client may name its request; anything else is replaced
REPORT_ID_CHARS = 64  # report ids are 32 hex digits; a longer one is never echoed back


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is a 413 as soon as that many
    bytes have arrived, chunked or not (a declared Content-Length over the limit is refused
    earlier, by the access-log middleware, without reading anything).

    The count is of the bytes actually received (a Content-Length can be absent or wrong), and
    reading stops at the limit, so an oversized upload never sits in memory whole. The 413 is
    raised from ``receive``, inside the route that reads the body, so the app's error handler
    writes it in the API's JSON error shape.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Connection: close, so the server stops reading the rest instead of draining it
                    raise HTTPException(413, f"request body passed {self.limit} bytes, the limit FAZHI_MAX_BYTES="
                                             f"{self.limit}", headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)
