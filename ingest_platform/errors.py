"""The platform's one error hierarchy.

Every error the platform raises on purpose derives from :class:`PlatformError`, and its message is
one line that says where and why (a file and line, a key, a version, a document), so the CLI can
print it as is and exit 2 instead of showing a traceback.
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every deliberate ingest-platform error; ``str()`` is one actionable line."""


class ConfigError(PlatformError, ValueError):
    """A settings file or value is wrong: the message names the file, the key and a suggestion."""


class SourceUnavailable(PlatformError, OSError):
    """A source could not be listed (unmounted, unreadable, driver missing). Its documents keep
    their last good state: an outage is never read as a deletion."""


class PromotionRefused(PlatformError):
    """The one door to production said no: the message names the missing or failing gates, or
    the held deletions and how to confirm them."""


class HomeLocked(PlatformError):
    """Another writer (a run, a promotion) holds the state folder; the message names it."""


class OperatorOnly(PlatformError):
    """Reading or promoting an explicit old version is an operator action."""


class LayoutMismatch(PlatformError):
    """A stage would read an upstream folder laid out with another shard count, whose shard keys
    name other documents (``shards.ShardedTable``); the message names the folder and both counts."""
