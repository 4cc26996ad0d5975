"""CSV cells that a spreadsheet will not run: OWASP's rule against formula injection.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula
to Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)`` from an annotator's ``source``
or user agent would be a live link in a researcher's sheet). Such a cell is written with a
leading ``'``, which the spreadsheet shows as text and hides; so is a cell that begins with
``'`` already, so that ``restore`` gives back every value exactly. Numbers (``-0.5``) are
left as they are.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def defuse(value):
    """``value`` as a CSV cell safe to open in a spreadsheet (non-text values unchanged)."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(QUOTE) or (value.startswith(FORMULA_STARTS) and not _number(value)):
        return QUOTE + value
    return value


def restore(value):
    """The value ``defuse`` was given (reading back a CSV this platform wrote)."""
    if isinstance(value, str) and value.startswith(QUOTE):
        return value[1:]
    return value


def defuse_frame(frame):
    """A copy of a pandas frame with every text cell ``defuse``d (numbers, booleans and
    dates untouched), ready for ``to_csv``."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype) in ("string", "str"):
            frame[column] = frame[column].map(defuse)
    frame.columns = [defuse(str(column)) for column in frame.columns]
    return frame


def restore_frame(frame):
    """``defuse_frame`` undone on a frame read back with ``pandas.read_csv``."""
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype) in ("string", "str"):
            frame[column] = frame[column].map(restore)
    return frame
