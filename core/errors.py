"""Typed exceptions raised by ``core`` for bad input.

Every class carries a message written for the person who uploaded the file: pages show
``str(error)`` as it is, so messages say what was wrong and what to do instead.
"""
from __future__ import annotations


class InputError(ValueError):
    """Base class: the input cannot be used as given (never a bug in the app)."""


class EmptyFile(InputError):
    """The upload has no bytes."""


class UnsupportedFile(InputError):
    """The file type is not one the app reads."""


class CorruptFile(InputError):
    """The file claims a known type but cannot be decoded (truncated, damaged)."""


class ImageTooLarge(InputError):
    """The image or upload exceeds the size limits."""


class EmptyImage(InputError):
    """The file's header declares an image with no pixels (a dimension of size 0)."""


class NoPixelData(InputError):
    """A DICOM file without an image in it (a report, a structured document...)."""


class NeedsSliceSelection(InputError):
    """A volume was given where one slice is expected; the caller must pick a slice.

    ``shape`` is the volume's shape so a UI can offer an axis and an index.
    """

    def __init__(self, message: str, shape: tuple[int, ...]):
        super().__init__(message)
        self.shape = shape


class NotAnMRISlice(InputError):
    """The image does not look like a brain MRI slice (a photo, a document, a blank frame)."""


class CaseError(InputError):
    """A 3D case cannot be assembled (missing modality, grids that differ, unknown labels)."""


class ModelUnavailable(RuntimeError):
    """A shipped model is missing or its file does not match the checksum in the manifest."""
