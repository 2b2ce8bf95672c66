"""HTTP surface of the metadata endpoints (AWS IMDS, container credentials, GCE) and the admission webhook."""

from __future__ import annotations

from flask import Blueprint, Flask

from kagiya.config import Settings

bp = Blueprint("metadata", __name__)


def init_app(app: Flask, settings: Settings) -> None:
    del settings
    app.register_blueprint(bp)
