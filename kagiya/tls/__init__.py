"""tls: certificate tooling (CA, server and client certificates, webhook kubeconfigs) and mutual-TLS serving helpers.

A library with no dependency on authn, authz or Flask, so the serving front and the CLI can both use it.
"""
