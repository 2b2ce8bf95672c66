"""authz: the SubjectAccessReview webhook for kube-apiserver (policy, policy file, live source, api, commands)."""
