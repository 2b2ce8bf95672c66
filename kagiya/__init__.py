"""kagiya (鍵屋, "locksmith"): keeps a Kubernetes platform's keys.

Importing the package must stay cheap: the `kagiya secrets` CLI runs in pre-commit hooks.
"""

__version__ = "0.1.0"
