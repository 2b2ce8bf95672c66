"""iam: map pods to cloud IAM identities and serve them short-lived credentials."""
