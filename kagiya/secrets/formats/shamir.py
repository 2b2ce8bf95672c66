"""Combining Shamir secret-sharing parts as sops does (its `shamir` package, from HashiCorp Vault).

A part is the share's y bytes followed by one x byte; the secret is the value at x = 0 of the polynomial through
the parts, byte by byte, in GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1. sops splits the data key
into one part per key group and needs `shamir_threshold` of them back.
"""

from __future__ import annotations

from collections.abc import Sequence

from kagiya.errors import CryptoError


def _mult(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
        b >>= 1
    return out


def _inverse(a: int) -> int:
    """a^254 = a^-1 in GF(2^8)."""
    out, power = 1, a
    for bit in range(8):
        if 254 >> bit & 1:
            out = _mult(out, power)
        power = _mult(power, power)
    return out


def combine(parts: Sequence[bytes]) -> bytes:
    """The secret from at least a threshold of parts. Raises CryptoError for malformed or duplicate parts."""
    if len(parts) < 2:
        raise CryptoError("Shamir: fewer than two parts")
    length = len(parts[0])
    if length < 2 or any(len(p) != length for p in parts):
        raise CryptoError("Shamir: parts of different or too short lengths")
    xs = [p[-1] for p in parts]
    if len(set(xs)) != len(xs) or 0 in xs:
        raise CryptoError("Shamir: duplicate or invalid parts")
    basis = []
    for i, xi in enumerate(xs):
        value = 1
        for j, xj in enumerate(xs):
            if i != j:
                value = _mult(value, _mult(xj, _inverse(xi ^ xj)))
        basis.append(value)
    secret = bytearray(length - 1)
    for idx in range(length - 1):
        acc = 0
        for part, b in zip(parts, basis, strict=True):
            acc ^= _mult(part[idx], b)
        secret[idx] = acc
    return bytes(secret)
