"""kagiya's Flask app for a test: built from settings in TESTING mode, its store closed afterwards.

    with kagiya_app(settings) as app:
        yield app            # in a fixture; the store's connections are disposed even if the test failed

One place for the lifecycle the suite's `app`-style fixtures share (specs/test-infrastructure.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def kagiya_app(settings: Any) -> Iterator[Any]:
    """`create_app(settings)` with TESTING on (errors reach the test instead of becoming a 500 page)."""
    from kagiya.web import create_app

    application = create_app(settings)
    application.config["TESTING"] = True
    try:
        yield application
    finally:
        application.extensions["kagiya.store"].dispose()
