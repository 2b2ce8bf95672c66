"""A real `moto_server` (AWS KMS and STS) on a free loopback port for the whole test session.

    from tests.support.moto import moto_server  # in a conftest: session fixture
    def test_x(moto_server): key_arn = moto_server.create_kms_key(region="eu-west-1")

The server is the real moto HTTP server run from the venv (specs/test-infrastructure.md, "Real servers"); tests
talk to it through boto3 with `endpoint_url=moto_server.url` and the dummy credentials tests/conftest.py sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import VENV_BIN, ServerProcess, free_port


class MotoServer:
    def __init__(self, log_dir: Path | None = None) -> None:
        port = free_port()
        log = (log_dir / f"moto-{port}.log") if log_dir else None
        self.process = ServerProcess(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port=port, log_path=log
        )

    @property
    def url(self) -> str:
        return self.process.url

    def start(self) -> MotoServer:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def client(self, service: str, region: str = "us-east-1") -> Any:
        import boto3

        return boto3.session.Session().client(
            service, region_name=region, endpoint_url=self.url,
            aws_access_key_id="testing", aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        )

    def create_kms_key(self, region: str = "us-east-1", alias: str = "") -> str:
        """A new symmetric ENCRYPT_DECRYPT key; returns its ARN (or the alias ARN when `alias` is given)."""
        kms = self.client("kms", region)
        meta = kms.create_key(Description="kagiya test key")["KeyMetadata"]
        if not alias:
            return str(meta["Arn"])
        kms.create_alias(AliasName=f"alias/{alias}", TargetKeyId=meta["KeyId"])
        return str(meta["Arn"]).replace(f":key/{meta['KeyId']}", f":alias/{alias}")

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server
