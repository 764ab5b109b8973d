"""Names from a data file as the terminal shows them: a column name is the file's text, and may hold
control characters and escape sequences (a newline, ``ESC [31m``, a window title) that must be shown,
not sent. Every table printed on the terminal passes names through :func:`shown_name`; warnings and
errors quote them with ``repr``; ``report.html`` and JSON files keep the real names, escaped as HTML
and JSON escape them."""


def shown_name(name) -> str:
    """A column name for a table on the terminal: unchanged when every character is printable, else
    with each control or other non-printable character escaped as ``repr`` escapes it (``\\n``, ``\\x1b``)."""
    name = str(name)
    return name if name.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)
