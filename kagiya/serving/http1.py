"""Parsing HTTP/1.1 requests from bytes the front has buffered, strictly and within limits.

Why hand-written: the front must own every byte before a handler thread sees the request, with limits it
chooses, and answer every refusal itself as a Kubernetes `Status`. The parser accepts what kube-apiserver,
kubelet, client-go, requests/urllib3 and curl send, and refuses the ambiguity that enables request smuggling
(both Content-Length and Transfer-Encoding, differing Content-Lengths, obsolete line folding, bare CR/LF, NUL).
Pure functions over bytes: the event loop calls them only when a complete head (or chunk) is buffered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BARE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than HTAB
REASONS = {
    400: "BadRequest", 408: "Timeout", 413: "RequestEntityTooLarge", 414: "RequestURITooLong",
    431: "RequestHeaderFieldsTooLarge", 500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable",
    505: "HTTPVersionNotSupported",
}
PHRASES = {
    100: "Continue", 200: "OK", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
    414: "URI Too Long", 431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class FrontError(Exception):
    """A request the front refuses itself; the connection is closed after the answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Limits:
    max_uri_bytes: int
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int


@dataclass
class RequestHead:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_length: int | None = None
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False


def check_incomplete(buffer: bytes | bytearray, limits: Limits) -> None:
    """Refuse a head that is already too long before its end has arrived (414 or 431)."""
    line_end = buffer.find(b"\r\n")
    if line_end < 0 and len(buffer) > limits.max_uri_bytes:
        raise FrontError(414, f"request line longer than {limits.max_uri_bytes} bytes")
    if len(buffer) > limits.max_uri_bytes + limits.max_header_bytes + 4:
        raise FrontError(431, f"header block larger than {limits.max_header_bytes} bytes")


def parse_request_line(line: bytes, limits: Limits) -> tuple[str, str, str]:
    if len(line) > limits.max_uri_bytes:
        raise FrontError(414, f"request line longer than {limits.max_uri_bytes} bytes")
    parts = line.split(b" ")
    if len(parts) != 3 or not TOKEN_RE.fullmatch(parts[0]):
        raise FrontError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise FrontError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        raise FrontError(400, "malformed request line")
    if not target or not target.isascii() or any(b < 0x21 or b == 0x7F for b in target):
        raise FrontError(400, "the request target must be printable ASCII without spaces")
    if not target.startswith(b"/") and not (target == b"*" and method == b"OPTIONS"):
        if target.startswith((b"http://", b"https://")):  # absolute-form: keep the path
            authority = target.find(b"//") + 2
            ends = [i for i in (target.find(b"/", authority), target.find(b"?", authority)) if i > 0]
            rest = target[min(ends):] if ends else b""
            target = rest if rest.startswith(b"/") else b"/" + rest  # `http://h?q=1` keeps its query
        else:
            raise FrontError(400, "the request target must be an absolute path")
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


def parse_head(block: bytes, limits: Limits) -> RequestHead:
    """The request line and header fields (`block` is everything before the blank line)."""
    request_line, _, fields = block.partition(b"\r\n")
    method, target, version = parse_request_line(request_line, limits)
    head = RequestHead(method, target, version, keep_alive=version == "HTTP/1.1")
    if len(fields) > limits.max_header_bytes:
        raise FrontError(431, f"header block larger than {limits.max_header_bytes} bytes")
    if b"\x00" in fields:
        raise FrontError(400, "header fields must not contain NUL bytes")
    lengths: set[bytes] = set()
    encodings: list[bytes] = []
    hosts = 0
    lines = fields.split(b"\r\n") if fields else []
    if len(lines) > limits.max_headers:
        raise FrontError(431, f"more than {limits.max_headers} header fields")
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise FrontError(400, "obsolete header line folding is not accepted")
        if b"\r" in line or b"\n" in line:
            raise FrontError(400, "header lines must end with CRLF")
        if _BARE.search(line):  # `Transfer-Encoding: \x0bchunked`: one reader's chunked is another's unknown coding
            raise FrontError(400, "header fields must not contain control characters")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN_RE.fullmatch(name):
            raise FrontError(400, "malformed header field")
        value = value.strip(b" \t")
        lower = name.lower()
        if lower == b"content-length":
            lengths.update(v.strip(b" \t") for v in value.split(b","))
        elif lower == b"transfer-encoding":
            encodings.append(b"")  # an empty field still names a coding: refused below, never ignored
            encodings.extend(v.strip(b" \t").lower() for v in value.split(b",") if v.strip(b" \t"))
        elif lower == b"connection":
            tokens = {v.strip().lower() for v in value.split(b",")}
            if b"close" in tokens:
                head.keep_alive = False
            elif b"keep-alive" in tokens:
                head.keep_alive = True
        elif lower == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = version == "HTTP/1.1"  # no 1xx to an HTTP/1.0 client (RFC 9110 15.2)
        elif lower == b"host":
            hosts += 1
        head.headers.append((name.decode("ascii"), value.decode("latin-1")))
    if encodings:
        if lengths:
            raise FrontError(400, "both Content-Length and Transfer-Encoding are set")
        encodings = [coding for coding in encodings if coding] or [b""]
        if encodings != [b"chunked"]:
            raise FrontError(501, "only the chunked transfer coding is supported")
        if version == "HTTP/1.0":
            raise FrontError(400, "chunked transfer coding needs HTTP/1.1")
        head.chunked = True
    elif lengths:
        if len(lengths) != 1:
            raise FrontError(400, "conflicting Content-Length values")
        raw = lengths.pop()
        if not raw.isdigit() or len(raw) > 18:
            raise FrontError(400, "Content-Length must be a decimal number")
        head.content_length = int(raw)
        if head.content_length > limits.max_body_bytes:
            raise FrontError(413, f"request body larger than {limits.max_body_bytes} bytes")
    if hosts > 1 or (hosts == 0 and version == "HTTP/1.1"):  # RFC 9112 3.2: exactly one Host in HTTP/1.1
        raise FrontError(400, "an HTTP/1.1 request needs exactly one Host header field")
    return head


class ChunkedBody:
    """Incremental chunked-body decoder: `feed(buffer)` consumes what it can from `buffer` and returns True once
    the last chunk and the trailer are in. 413 as soon as the decoded size passes max_body_bytes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.data = bytearray()  # one buffer, not a list of parts: 1-byte chunks cost ~40 bytes each as objects
        self.size = 0
        self.remaining = -1  # bytes left in the current chunk; -1: expecting a size line; -2: in the trailer
        self.trailer = 0

    def feed(self, buffer: bytearray) -> bool:
        while True:
            if self.remaining > 0:
                take = min(self.remaining, len(buffer))
                if not take:
                    return False
                self.data += buffer[:take]
                del buffer[:take]
                self.remaining -= take
                if self.remaining:
                    return False
                self.remaining = 0
            if self.remaining == 0:  # the CRLF after chunk data
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise FrontError(400, "chunk data must end with CRLF")
                del buffer[:2]
                self.remaining = -1
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > (1024 if self.remaining == -1 else self.limits.max_header_bytes):
                    raise FrontError(400 if self.remaining == -1 else 431, "chunk size line or trailer too long")
                return False
            line = bytes(buffer[:end])
            del buffer[:end + 2]
            if _BARE.search(line):  # a bare LF/CR ends the line for a lenient proxy in front: no two readings
                raise FrontError(400, "chunk lines must end with CRLF and hold no control characters")
            if self.remaining == -2:
                if not line:
                    return True
                self.trailer += len(line) + 2
                if self.trailer > self.limits.max_header_bytes:
                    raise FrontError(431, f"trailer larger than {self.limits.max_header_bytes} bytes")
                continue
            digits = line.split(b";", 1)[0].strip()
            if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
                raise FrontError(400, "malformed chunk size")
            length = int(digits, 16)
            if length == 0:
                self.remaining = -2
                continue
            self.size += length
            if self.size > self.limits.max_body_bytes:
                raise FrontError(413, f"request body larger than {self.limits.max_body_bytes} bytes")
            self.remaining = length

    def body(self) -> bytes:
        return bytes(self.data)
