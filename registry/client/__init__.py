"""The distribution client: push, pull, login and search against any OCI distribution registry."""
