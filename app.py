"""WSGI entry for other WSGI servers (`kagiya serve` is the supported one); settings from KAGIYA_* and KAGIYA_CONFIG.

Another server does not run the front's limits (docs/operations.md, "Serving model") nor start the
capabilities' background work; call `kagiya.serving.start_background(app)` once per process if you use one."""

from kagiya.web import create_app

app = create_app()
