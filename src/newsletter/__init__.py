"""newsletter: compose digests from articles and feeds, keep subscribers in SQL, send over SMTP."""

__version__ = "0.1.0"
__all__ = ["__version__"]
