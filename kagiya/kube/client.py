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


_clients: dict[int, Any] = {}


def read_service_account(settings: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """GET one ServiceAccount live (the index may not have seen a just-created one yet); None when it does not exist.

    Raises UpstreamUnavailable when the API server cannot answer within `settings.timeout_seconds`.
    """
    import json

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from kagiya.errors import UpstreamUnavailable

    api = _clients.get(id(settings))
    if api is None:
        api = _clients[id(settings)] = client.CoreV1Api(api_client(settings))
    try:
        resp: Any = api.read_namespaced_service_account(name, namespace, _preload_content=False,
                                                        _request_timeout=settings.timeout_seconds)
        body: dict[str, Any] = json.loads(resp.data)
        return body
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise UpstreamUnavailable(f"cannot read service account {namespace}/{name}: HTTP {exc.status}") from None
    except Exception as exc:  # noqa: BLE001 - transport errors: the API server is unreachable or slow
        raise UpstreamUnavailable(f"cannot read service account {namespace}/{name}: {type(exc).__name__}") from None
