"""The canonical interaction schema every reader produces.

``user_id`` and ``item_id`` keep the values the data gives (strings or integers); the engine maps
them to dense indices internally. ``rating`` is a float and optional: a log without it is implicit
feedback, every row a positive interaction. ``timestamp`` is optional, in seconds.
"""

from __future__ import annotations

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TIMESTAMP = "timestamp"

REQUIRED_COLUMNS = (USER, ITEM)
OPTIONAL_COLUMNS = (RATING, TIMESTAMP)
CANONICAL_COLUMNS = (USER, ITEM, RATING, TIMESTAMP)
