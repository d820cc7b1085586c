class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded or reached; the message says what to fix."""
