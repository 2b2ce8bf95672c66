"""login: `kagiya login`, the kubectl exec credential plugin (OIDC flows, token cache, kubeconfig entry)."""
