"""authn: the TokenReview webhook for kube-apiserver, its review cache and identity providers (`providers/`)."""
