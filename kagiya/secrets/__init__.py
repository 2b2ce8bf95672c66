"""secrets: kubesec-compatible encryption of Kubernetes Secret manifests."""
