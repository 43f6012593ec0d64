"""Mail header values: refused when they could inject headers."""

from __future__ import annotations

from ..errors import InvalidInput


def check_header(name: str, value: str) -> str:
    """Refuse CR/LF (header injection) in a value meant for a mail header."""
    if "\r" in value or "\n" in value:
        raise InvalidInput(f"{name}: line breaks are not allowed in a mail header")
    return value
