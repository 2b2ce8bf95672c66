"""A counting, failable front for moto_server's STS: how many AssumeRole calls reached STS, and an outage switch.

`StsCounter(moto_url)` serves on loopback and forwards each request to moto_server unchanged (the real STS wire
protocol both ways), counting `Action=AssumeRole` per `RoleSessionName`. `failing = True` answers every call with
a 503 STS `ServiceUnavailable` error document (STS down) without reaching moto.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import Counter
from typing import Any

from tests.support.threaded import ThreadedServer

STS_UNAVAILABLE = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Receiver</Type>'
                   b"<Code>ServiceUnavailable</Code><Message>test outage</Message></Error>"
                   b"<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>")


class StsCounter:
    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url.rstrip("/")
        self.failing = False
        self.assume_role: Counter[str] = Counter()
        #: The session tags (Key -> Value) of each AssumeRole, in order; {} when none were sent.
        self.tags: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadedServer(self._app, "sts-counter")
        self.url = ""

    def start(self) -> StsCounter:
        self._server.start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.assume_role.values())

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        import requests

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") == ["AssumeRole"]:
            with self._lock:
                self.assume_role[(form.get("RoleSessionName") or [""])[0]] += 1
                self.tags.append({form[f"Tags.member.{i}.Key"][0]: form.get(f"Tags.member.{i}.Value", [""])[0]
                                  for i in range(1, 51) if f"Tags.member.{i}.Key" in form})
        if self.failing:
            start_response("503 Service Unavailable", [("Content-Type", "text/xml")])
            return [STS_UNAVAILABLE]
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers.pop("Host", None)
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        path = environ.get("PATH_INFO", "/") + (("?" + environ["QUERY_STRING"]) if environ.get("QUERY_STRING") else "")
        reply = requests.request(environ["REQUEST_METHOD"], self.moto_url + path, data=body, headers=headers,
                                 timeout=10)
        start_response(f"{reply.status_code} {reply.reason}",
                       [(k, v) for k, v in reply.headers.items()
                        if k.lower() in ("content-type", "x-amzn-requestid")])
        return [reply.content]
