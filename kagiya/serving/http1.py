"""Reading one HTTP/1.1 request from an asyncio stream, strictly and within limits.

Why hand-written: the front must own every byte before a handler thread sees the request, with deadlines and
size limits it chooses, and answer every refusal itself as a Kubernetes `Status`. The parser accepts what
kube-apiserver, kubelet, client-go, requests/urllib3 and curl send, and refuses ambiguity that enables request
smuggling (both Content-Length and Transfer-Encoding, differing Content-Lengths, obsolete line folding, NUL bytes).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
REASONS = {
    400: "BadRequest", 408: "Timeout", 413: "RequestEntityTooLarge", 414: "RequestURITooLong",
    431: "RequestHeaderFieldsTooLarge", 501: "NotImplemented", 503: "ServiceUnavailable",
    505: "HTTPVersionNotSupported",
}
PHRASES = {
    200: "OK", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
    431: "Request Header Fields Too Large", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
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


async def read_line(reader: asyncio.StreamReader, limit: int, code: int, what: str) -> bytes:
    """One CRLF-terminated line of at most `limit` bytes (without its line end); `code` past the limit."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise FrontError(code, f"{what} longer than {limit} bytes") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise EOFError from None
        raise FrontError(400, f"connection closed in the middle of the {what}") from None
    if len(line) > limit + 2:
        raise FrontError(code, f"{what} longer than {limit} bytes")
    if not line.endswith(b"\r\n"):
        raise FrontError(400, f"{what} must end with CRLF")
    return line[:-2]


def parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not TOKEN_RE.match(parts[0]):
        raise FrontError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise FrontError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        raise FrontError(400, "malformed request line")
    if not target or any(b < 0x21 or b > 0x7E for b in target):
        raise FrontError(400, "the request target must be printable ASCII without spaces")
    if not target.startswith(b"/") and not (target == b"*" and method == b"OPTIONS"):
        if target.startswith((b"http://", b"https://")):
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash > 0 else b"/"
        else:
            raise FrontError(400, "the request target must be an absolute path")
    return method.decode("ascii"), target.decode("ascii"), version.decode("ascii")


async def read_head(reader: asyncio.StreamReader, limits: Limits, request_line: bytes) -> RequestHead:
    method, target, version = parse_request_line(request_line)
    head = RequestHead(method, target, version, keep_alive=version == "HTTP/1.1")
    total = 0
    lengths: set[bytes] = set()
    encodings: list[bytes] = []
    while True:
        line = await read_line(reader, limits.max_header_bytes, 431, "header block")
        if not line:
            break
        total += len(line) + 2
        if total > limits.max_header_bytes:
            raise FrontError(431, f"header block larger than {limits.max_header_bytes} bytes")
        if len(head.headers) >= limits.max_headers:
            raise FrontError(431, f"more than {limits.max_headers} header fields")
        if line[:1] in (b" ", b"\t"):
            raise FrontError(400, "obsolete header line folding is not accepted")
        if b"\x00" in line or b"\r" in line:
            raise FrontError(400, "header fields must not contain NUL or bare CR bytes")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN_RE.match(name):
            raise FrontError(400, "malformed header field")
        value = value.strip(b" \t")
        lower = name.lower()
        if lower == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif lower == b"transfer-encoding":
            encodings.extend(v.strip().lower() for v in value.split(b",") if v.strip())
        elif lower == b"connection":
            tokens = {v.strip().lower() for v in value.split(b",")}
            if b"close" in tokens:
                head.keep_alive = False
            elif b"keep-alive" in tokens:
                head.keep_alive = True
        elif lower == b"expect" and value.lower() == b"100-continue":
            head.expect_continue = True
        head.headers.append((name.decode("ascii"), value.decode("latin-1")))
    if encodings:
        if lengths:
            raise FrontError(400, "both Content-Length and Transfer-Encoding are set")
        if encodings != [b"chunked"]:
            raise FrontError(501, "only the chunked transfer coding is supported")
        if version == "HTTP/1.0":
            raise FrontError(400, "chunked transfer coding needs HTTP/1.1")
        head.chunked = True
    elif lengths:
        if len(lengths) != 1:
            raise FrontError(400, "conflicting Content-Length values")
        raw = lengths.pop()
        if not raw.isdigit() or not raw.isascii() or len(raw) > 18:
            raise FrontError(400, "Content-Length must be a decimal number")
        head.content_length = int(raw)
        if head.content_length > limits.max_body_bytes:
            raise FrontError(413, f"request body larger than {limits.max_body_bytes} bytes")
    return head


async def read_body(reader: asyncio.StreamReader, head: RequestHead, limits: Limits) -> bytes:
    """The whole body: Content-Length bytes, or the chunks decoded; 413 once it passes max_body_bytes."""
    if head.content_length is not None:
        try:
            return await reader.readexactly(head.content_length)
        except asyncio.IncompleteReadError:
            raise FrontError(400, "connection closed before the whole body arrived") from None
    if not head.chunked:
        return b""
    chunks: list[bytes] = []
    size = 0
    while True:
        line = await read_line(reader, 1024, 400, "chunk size line")
        digits = line.split(b";", 1)[0].strip()
        if not digits or len(digits) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in digits):
            raise FrontError(400, "malformed chunk size")
        length = int(digits, 16)
        if length == 0:
            break
        size += length
        if size > limits.max_body_bytes:
            raise FrontError(413, f"request body larger than {limits.max_body_bytes} bytes")
        try:
            chunks.append(await reader.readexactly(length))
            if await reader.readexactly(2) != b"\r\n":
                raise FrontError(400, "chunk data must end with CRLF")
        except asyncio.IncompleteReadError:
            raise FrontError(400, "connection closed in the middle of a chunk") from None
    trailer = 0
    while True:  # trailer fields are read and dropped
        line = await read_line(reader, limits.max_header_bytes, 431, "trailer")
        if not line:
            break
        trailer += len(line)
        if trailer > limits.max_header_bytes:
            raise FrontError(431, f"trailer larger than {limits.max_header_bytes} bytes")
    return b"".join(chunks)
