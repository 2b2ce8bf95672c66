"""The `kubernetes.client.ApiClient` built from the `kube:` settings section (the package is imported lazily)."""

from __future__ import annotations

from typing import Any


def api_client(settings: Any) -> Any:
    """A `kubernetes.client.ApiClient` from the `kube:` settings section (raises UpstreamUnavailable/ConfigError)."""
    from kubernetes import client, config

    from kagiya.errors import ConfigError

    mode = settings.mode
    try:
        if mode == "incluster":
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
        elif mode == "kubeconfig":
            cfg = client.Configuration()
            config.load_kube_config(config_file=settings.kubeconfig or None, context=settings.context or None,
                                    client_configuration=cfg)
        elif mode == "url":
            if not settings.host:
                raise ConfigError("kube.host is required when kube.mode is url")
            cfg = client.Configuration(host=settings.host.rstrip("/"))
            if settings.token_file:
                with open(settings.token_file, encoding="utf-8") as fh:
                    cfg.api_key = {"authorization": "Bearer " + fh.read().strip()}
            if settings.ca_file:
                cfg.ssl_ca_cert = settings.ca_file
            cfg.verify_ssl = not settings.insecure_skip_tls_verify
        else:
            raise ConfigError("kube.mode is off: no Kubernetes API configured")
    except config.ConfigException as exc:
        raise ConfigError(f"kube.mode {mode}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"kube: cannot read {exc.filename}: {exc.strerror}") from None
    return client.ApiClient(cfg)
