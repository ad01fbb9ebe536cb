"""
Segment Engage audience names as the traits Engage sends to Rehook.
"""

from __future__ import annotations

__all__ = ["audience_key"]


def audience_key(name: str) -> str:
    """
    The snake_cased trait key Engage uses for an audience name.

    Words are runs of letters or digits; anything else (spaces, dashes, punctuation) separates them. A word also
    ends where a lower-case letter meets an upper-case one (``orderCompleted``), where letters meet digits
    (``last30Days``), and before the last capital of an acronym that starts a new word (``VIPUsers`` ->
    ``vip_users``). The words are lower-cased and joined with ``_``:
    ``"Order Completed Last 30 Days"`` -> ``"order_completed_last_30_days"``.

    Raises:
        ValueError: the name has no letter or digit.
    """
    words: list[str] = []
    word = ""

    def kind(c: str) -> str:
        if c.isdigit():
            return "digit"
        if c.isupper():
            return "upper"
        if c.isalpha():
            return "lower"  # lower-case, or a letter without case
        return "other"

    for i, c in enumerate(name):
        k = kind(c)
        if k == "other":
            if word:
                words.append(word)
            word = ""
            continue
        if word:
            prev = kind(word[-1])
            nxt = kind(name[i + 1]) if i + 1 < len(name) else "other"
            starts_word = (
                (prev == "lower" and k == "upper")
                or ((prev == "digit") != (k == "digit"))
                or (prev == "upper" and k == "upper" and nxt == "lower")
            )
            if starts_word:
                words.append(word)
                word = ""
        word += c
    if word:
        words.append(word)
    if not words:
        raise ValueError(f"the audience name {name!r} has no letters or digits")
    return "_".join(w.lower() for w in words)
