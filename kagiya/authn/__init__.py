"""authn: TokenReview / SubjectAccessReview webhooks for kube-apiserver, identity providers, mTLS tooling."""
