"""Kubernetes API access: client settings (settings.py, light), the API client (client.py), the watch-fed indexes
(index.py) and the watch that feeds them, with its freshness (watch.py).

Importing this package is cheap: the `kubernetes` client is imported only when a client is built or a watch starts.
"""

from kagiya.kube.client import api_client
from kagiya.kube.index import KubeIndex, NamespaceInfo, PodInfo, ServiceAccountInfo
from kagiya.kube.settings import KubeSettings
from kagiya.kube.watch import KubeWatcher

__all__ = ["KubeIndex", "KubeSettings", "KubeWatcher", "NamespaceInfo", "PodInfo", "ServiceAccountInfo",
           "api_client"]
