"""Exceptions raised on bad input.

Every error the library raises on purpose derives from :class:`BVDMDataError`,
so the command line can print it as one line and exit non-zero, and callers can
catch the whole family with one ``except``.
"""

from __future__ import annotations


class BVDMDataError(Exception):
    """Base class of every error raised deliberately by bvdm-data."""


class ArgumentError(BVDMDataError, ValueError):
    """An argument of the API or the command line breaks its rule (see :mod:`bvdm_data.arguments`)."""


class ClipError(BVDMDataError, ValueError):
    """A clip violates the data contract (see :func:`bvdm_data.clip.check_clip`)."""


class CTCFormatError(BVDMDataError, ValueError):
    """A Cell Tracking Challenge file or folder does not follow the format rules."""


class BundleError(BVDMDataError, ValueError):
    """A bundle is missing, incomplete, corrupt or of another format version."""
