"""One conformance suite for every recipient-key backend (STYLE.md habit 9): local, pgp, gcp, aws, age.

Each backend runs against its real part (a keyring file, gpg, the Cloud KMS stand-in through google-cloud-kms,
moto_server through boto3) and must behave the same way through the `RecipientKey` seam:
round trip; randomised wrapping; a damaged blob never yields a different data key; a blob for another key of the
same type is refused; an unreachable, stopped or hanging upstream gives `KeyUnavailable` within the timeout.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from kagiya.errors import CryptoError
from kagiya.secrets.keys.base import KeyUnavailable, RecipientKey, open_key
from kagiya.secrets.settings import SecretsSettings
from tests.secrets_keys.conftest import GCP_KEY, GCP_OTHER_KEY
from tests.support.gpg import TEST_KEY_A_FPR

pytestmark = pytest.mark.integration

#: The timeout the upstream-down tests configure, and how much later than it an answer may come.
TIMEOUT = 1.5
MARGIN = 1.5


@dataclass
class Backend:
    name: str
    uri: str
    other_uri: str
    settings: SecretsSettings
    #: Settings under which the upstream is down (stopped / nothing listening), or None if there is no upstream.
    down: Callable[[], SecretsSettings] | None
    #: Settings under which the upstream accepts connections but never answers.
    hanging: Callable[[str], SecretsSettings] | None
    #: Whether a blob for another key of this type gives CryptoError (moto answers AccessDenied instead).
    wrong_key_is_crypto_error: bool = True

    def key(self, settings: SecretsSettings | None = None) -> RecipientKey:
        return open_key(self.uri, settings or self.settings)


@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """A loopback port that accepts TCP connections and never answers: a hung upstream."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _local(request: pytest.FixtureRequest) -> Backend:
    local = pytest.importorskip("kagiya.secrets.keys.local")
    keyring = request.getfixturevalue("tmp_path_factory").mktemp("keyring") / "keyring"
    settings = SecretsSettings(keyring=str(keyring), kms_timeout_seconds=TIMEOUT)
    local.generate(settings, "main")
    local.generate(settings, "other")
    return Backend("local", "local:main", "local:other", settings, down=None, hanging=None)


def _pgp(request: pytest.FixtureRequest) -> Backend:
    home = request.getfixturevalue("gpg_home")
    other = home.generate_key("Conformance Other")
    settings = SecretsSettings(gnupg_home=str(home.path), kms_timeout_seconds=TIMEOUT)
    hung_gpg = request.getfixturevalue("tmp_path_factory").mktemp("gpg") / "gpg"
    hung_gpg.write_text("#!/bin/sh\nexec sleep 60\n")
    hung_gpg.chmod(hung_gpg.stat().st_mode | stat.S_IEXEC)
    missing_gpg = hung_gpg.parent / "missing-gpg"
    return Backend(
        "pgp", f"pgp:{TEST_KEY_A_FPR}", f"pgp:{other}", settings,
        down=lambda: SecretsSettings(gnupg_home=str(home.path), gpg_binary=str(missing_gpg)),
        hanging=lambda _url: SecretsSettings(gnupg_home=str(home.path), gpg_binary=str(hung_gpg),
                                             kms_timeout_seconds=TIMEOUT),
    )


def _gcp(request: pytest.FixtureRequest) -> Backend:
    from tests.standins.cloudkms import CloudKms

    kms = request.getfixturevalue("cloudkms_session")
    stopped = CloudKms().start()
    stopped.create_key(GCP_KEY)
    stopped_url = stopped.url
    stopped.stop()  # a stand-in that was there and went away: its port is closed now
    return Backend(
        "gcp", f"gcp:{GCP_KEY}", f"gcp:{GCP_OTHER_KEY}",
        SecretsSettings(gcp_kms_endpoint=kms.url, kms_timeout_seconds=TIMEOUT),
        down=lambda: SecretsSettings(gcp_kms_endpoint=stopped_url, kms_timeout_seconds=TIMEOUT),
        hanging=lambda url: SecretsSettings(gcp_kms_endpoint=url, kms_timeout_seconds=TIMEOUT),
    )


def _aws(request: pytest.FixtureRequest) -> Backend:
    from tests.support.moto import MotoServer

    moto = request.getfixturevalue("moto_server")
    keys = request.getfixturevalue("aws_keys")
    with MotoServer() as short_lived:  # a moto_server that was there and stopped
        stopped_url = short_lived.url
    return Backend(
        "aws", f"aws:{keys['key']}", f"aws:{keys['other']}",
        SecretsSettings(aws_kms_endpoint=moto.url, kms_timeout_seconds=TIMEOUT),
        down=lambda: SecretsSettings(aws_kms_endpoint=stopped_url, kms_timeout_seconds=TIMEOUT),
        hanging=lambda url: SecretsSettings(aws_kms_endpoint=url, kms_timeout_seconds=TIMEOUT),
        wrong_key_is_crypto_error=False,
    )


def _age(request: pytest.FixtureRequest) -> Backend:
    pyrage = pytest.importorskip("pyrage")
    mine, other = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    key_file = request.getfixturevalue("tmp_path_factory").mktemp("age") / "keys.txt"
    key_file.write_text(f"{mine}\n{other}\n")
    key_file.chmod(0o600)
    return Backend("age", f"age:{mine.to_public()}", f"age:{other.to_public()}",
                   SecretsSettings(age_key_file=str(key_file)), down=None, hanging=None)


@pytest.fixture(scope="module", params=["local", "pgp", "gcp", "aws", "age"])
def backend(request: pytest.FixtureRequest) -> Backend:
    factory: Callable[[pytest.FixtureRequest], Backend] = globals()[f"_{request.param}"]
    return factory(request)


def test_round_trip(backend: Backend) -> None:
    key = backend.key()
    assert key.scheme == backend.name and key.uri == backend.uri
    dek = os.urandom(32)
    blob = key.wrap(dek)
    assert isinstance(blob, bytes) and dek not in blob
    assert key.unwrap(blob) == dek
    # A fresh key object (another process, later) opens it too.
    assert backend.key().unwrap(blob) == dek


def test_wrapping_is_randomised(backend: Backend) -> None:
    """Two files sharing a data key must not be recognisable from their trailers."""
    key = backend.key()
    dek = os.urandom(32)
    assert key.wrap(dek) != key.wrap(dek)


@given(data=st.data())
@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_damaged_blob_never_yields_another_data_key(backend: Backend, data: st.DataObject) -> None:
    key = backend.key()
    dek = os.urandom(32)
    blob = bytearray(key.wrap(dek))
    # Blob lengths vary between wraps (pgp signatures, KMS headers), so draw where to hit as a fraction.
    position = data.draw(st.integers(0, 2**16 - 1), label="position") * len(blob) // 2**16
    blob[position] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        result = key.unwrap(bytes(blob))
    except (CryptoError, KeyUnavailable):
        return
    # Only an edit the format ignores (e.g. inside pgp armour whitespace) may still open, to the same key.
    assert result == dek


@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_short_blob_is_a_crypto_error(backend: Backend, cut: str) -> None:
    key = backend.key()
    blob = key.wrap(os.urandom(32))
    with pytest.raises(CryptoError):
        key.unwrap(b"" if cut == "empty" else blob[: len(blob) // 2])


def test_blob_for_another_key_is_refused(backend: Backend) -> None:
    other = open_key(backend.other_uri, backend.settings)
    dek = os.urandom(32)
    blob = other.wrap(dek)
    assert other.unwrap(blob) == dek
    expected = CryptoError if backend.wrong_key_is_crypto_error else (CryptoError, KeyUnavailable)
    with pytest.raises(expected) as info:
        backend.key().unwrap(blob)
    assert "\n" not in str(info.value) and dek.hex() not in str(info.value)


@pytest.mark.parametrize("operation", ["wrap", "unwrap"])
def test_upstream_down_is_key_unavailable_quickly(backend: Backend, operation: str) -> None:
    if backend.down is None:
        pytest.skip(f"{backend.name} has no upstream")
    blob = backend.key().wrap(os.urandom(32))
    key = backend.key(backend.down())
    started = time.monotonic()
    with pytest.raises(KeyUnavailable) as info:
        key.wrap(os.urandom(32)) if operation == "wrap" else key.unwrap(blob)
    assert time.monotonic() - started < MARGIN
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["wrap", "unwrap"])
def test_hanging_upstream_answers_within_the_timeout(backend: Backend, black_hole: str, operation: str) -> None:
    if backend.hanging is None:
        pytest.skip(f"{backend.name} has no upstream")
    blob = backend.key().wrap(os.urandom(32))
    key = backend.key(backend.hanging(black_hole))
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match=r"within 1\.5s"):
        key.wrap(os.urandom(32)) if operation == "wrap" else key.unwrap(blob)
    assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT + MARGIN
