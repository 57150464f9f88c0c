"""Log levels and the words of log lines: what "logs containing a text" means. Pure: no
database, no engine.

A line's words are its runs of letters and digits, lowercased ("Greeting Ada: run_4f2" has
"greeting", "ada", "run" and "4f2"); a search matches the runs whose logs have a word starting
with each word searched for ("greet ada" finds the line above, "eting" does not).
"""

from __future__ import annotations

import re

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
NAMES = {number: name for name, number in LEVELS.items()}
ERROR = LEVELS["ERROR"]
# Searched words kept per query: enough for any phrase a person types.
MAX_SEARCH_WORDS = 16
# Characters of a search, of one run's lines or across runs: longer is a paste, not a search.
MAX_SEARCH_LENGTH = 200

_WORD = re.compile(r"[^\W_]+")


def level_name(level: int) -> str:
    """DEBUG, INFO, ... for logging's numbers; a custom level as "LEVEL 25"."""
    return NAMES.get(level, f"LEVEL {level}")


def parse_level(text: str) -> int | None:
    """The number of a level name (any case) or of a number given as text; None if neither."""
    text = text.strip()
    if text.upper() in LEVELS:
        return LEVELS[text.upper()]
    if text.isdigit() and 0 < int(text) <= 100:
        return int(text)
    return None


def words(text: str) -> str:
    """The words of `text`, separated by single spaces: what PostgreSQL indexes for it."""
    return " ".join(_WORD.findall(text.lower()))


def tsquery(text: str) -> str | None:
    """A to_tsquery('simple', ...) text matching words that start with each word of `text`;
    None if `text` has no words (nothing to search for)."""
    found = list(dict.fromkeys(_WORD.findall(text.lower())))[:MAX_SEARCH_WORDS]
    if not found:
        return None
    # Each word is letters and digits only, so quoting it is all to_tsquery needs.
    return " & ".join(f"'{word}':*" for word in found)
