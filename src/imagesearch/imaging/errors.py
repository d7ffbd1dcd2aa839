"""Why one image cannot be embedded; the rest of its batch is unaffected."""

from __future__ import annotations

from imagesearch.common.types import ImageErrorReason


class ImageRejected(Exception):
    """One image cannot be embedded; the rest of its batch is unaffected."""

    def __init__(self, reason: ImageErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"ImageRejected({self.reason.name}, {self.message!r})"


__all__ = ["ImageErrorReason", "ImageRejected"]
