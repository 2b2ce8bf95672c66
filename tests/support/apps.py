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


@contextmanager
def synced_iam_app(settings: Any, *, testing: bool = True) -> Iterator[Any]:
    """`kagiya_app` whose pod index has synced from the apiserver (stand-in) its `kube:` section names, so the
    first request sees every pod; the watches are stopped afterwards. `testing=False` answers errors as `Status`
    bodies, as in production."""
    from kagiya.iam.context import iam_context

    with kagiya_app(settings) as application:
        application.config["TESTING"] = testing
        ctx = iam_context(application)
        ctx.kube_index().wait_synced(10)
        try:
            yield application
        finally:
            if ctx.watcher is not None:
                ctx.watcher.stop(2)
