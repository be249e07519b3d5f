"""The error every user-facing failure raises: one line, naming the thing."""


class DockyardError(Exception):
    """A failure the CLI reports as one line and exit status 1."""

    exit_code = 1


class NotFound(DockyardError):
    """A named thing (image, blob, container…) does not exist."""


class InvalidReference(DockyardError):
    """A reference string does not follow the distribution grammar."""


class DigestMismatch(DockyardError):
    """Content did not hash to the digest it was named by."""
