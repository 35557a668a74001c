"""Errors that reach the user as one clear line, never as a traceback."""

from __future__ import annotations


class NetdoctorError(Exception):
    """Base of every error the CLI turns into a message and an exit code."""

    exit_code = 3


class ParseError(NetdoctorError):
    """A kernel file did not have the shape its parser expects.

    The message says what was wrong (line, column, token) so that the caller can
    prefix it with the file name: "cannot parse /proc/net/snmp: line 3: ...".
    """


class SourceError(NetdoctorError):
    """A source could not produce a view at all (capture unreadable, Prometheus down...)."""


class UsageError(NetdoctorError):
    """Bad flags or arguments; exit code 3 (UNKNOWN), not click's 2 (CRITICAL)."""
