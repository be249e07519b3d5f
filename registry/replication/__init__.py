"""Replication's engine: copies artifacts between this registry's storage and a remote registry (through the
registry client), per the policies and executions of registry.model.replication. The one part of the server that
uses the client."""
