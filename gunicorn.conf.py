"""gunicorn settings for `gunicorn -c gunicorn.conf.py app:app` (the container's command).

The same options `kagiya serve` uses, derived from KAGIYA_* settings (host, port, workers, tls_cert, tls_key,
client_ca), with the same refusal to serve plain HTTP on a non-loopback address.
"""

from kagiya.config import load_settings
from kagiya.serving import check_listen, gunicorn_options, shared_metrics_dir

_settings = load_settings()
check_listen(_settings)
shared_metrics_dir(_settings)
globals().update(gunicorn_options(_settings))
