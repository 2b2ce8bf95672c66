"""HTTP surface of the SubjectAccessReview authorization webhook."""

from __future__ import annotations

from flask import Blueprint, Flask

from kagiya.config import Settings

bp = Blueprint("authz", __name__)


def init_app(app: Flask, settings: Settings) -> None:
    del settings
    app.register_blueprint(bp)
