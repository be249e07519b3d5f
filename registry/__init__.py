"""The OCI distribution API: a Flask registry server and the push/pull/login client."""
