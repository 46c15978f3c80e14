"""Names checked and strings escaped for each format we write: one place per format.

Every string that comes from a file, folder, sidecar or flag (file and class names, a model's name, tensor names,
notes) and reaches a format we write goes through one of these:

* console and one-line messages: :func:`console_text` (control characters shown as escapes, so a file name
  cannot move the cursor, recolour the terminal or split one sentence over two lines);
* names that become folders or identifiers (a Triton model name): :func:`safe_name` (a fixed pattern, refused
  otherwise);
* names that must stay one line (a class in ``labels.txt``): :func:`control_characters` finds what would break
  them, and :func:`label_line` refuses it;
* protobuf text format (``config.pbtxt``): :func:`pbtxt_string` for values, :func:`pbtxt_comment` for comments;
* Markdown (``report.md``): :func:`markdown_text` for running text and table cells, :func:`markdown_code` for a
  name shown as code; HTML is escaped with :func:`html.escape` by its writer;
* plot labels (matplotlib): :func:`plot_text` (``$`` would start mathtext);
* JSON: ``json.dumps`` escapes everything itself; nothing builds JSON by hand.
"""

from __future__ import annotations

import re
import unicodedata

from alexnet_deploy.core.errors import AlexNetDeployError, ConfigError

__all__ = [
    "SAFE_NAME_PATTERN",
    "console_text",
    "control_characters",
    "label_line",
    "markdown_code",
    "markdown_text",
    "pbtxt_comment",
    "pbtxt_string",
    "plot_text",
    "safe_name",
]

SAFE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _is_control(ch: str) -> bool:
    """Control (Cc), format (Cf: bidi overrides, zero-width joiners) and line/paragraph separators (Zl, Zp)."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def control_characters(text: str) -> list[str]:
    """The control characters in ``text`` (line breaks, tabs, escape, bidi overrides...), each as an escape."""
    return [_escape_char(ch) for ch in dict.fromkeys(text) if _is_control(ch)]


def _escape_char(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def console_text(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\n``, ``\\x1b``, ``\\u202e``).

    What a terminal would obey (a line break, an ANSI escape sequence, a right-to-left override) is shown
    instead, so a name prints as one line that says what the name really is.
    """
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(_escape_char(ch) if _is_control(ch) else ch for ch in text)


def safe_name(name: str, what: str = "The name") -> str:
    """Return ``name`` if it matches :data:`SAFE_NAME_PATTERN` (letters, digits, ``_ . -``, at most 128, not
    starting with ``.``, ``_`` or ``-``), so that it can name a folder and be written into any format.

    Raises:
        ConfigError: it does not.
    """
    if not isinstance(name, str) or not SAFE_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{what} {console_text(repr(name))} is not a safe name: use 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    return name


def label_line(label: str, where: str, error: type[AlexNetDeployError] = AlexNetDeployError) -> str:
    """``label`` as one line of a label file (``labels.txt``): refused if a control character would split it.

    Raises:
        ``error``: the label holds a line break or another control character.
    """
    if bad := control_characters(label):
        raise error(
            f"The class name {console_text(repr(label))} holds {', '.join(bad)}, so it cannot be one line of {where}; "
            "rename the class (its folder) without control characters."
        )
    return label


def pbtxt_string(text: str) -> str:
    """``text`` as a quoted protobuf text-format string: quotes and backslashes escaped, every non-printable
    character (a line break, a control byte) written as C escapes of its UTF-8 bytes, so it stays one value."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ch.isprintable() and not _is_control(ch):
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    out.append('"')
    return "".join(out)


def pbtxt_comment(text: str) -> str:
    """``text`` made safe to follow ``#`` on one comment line of a ``config.pbtxt``: nothing can end the comment."""
    return console_text(text)


_MD_SPECIAL = re.compile(r"([\\`*\[\]<>&|~])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # not inside a word, where it could emphasise
_MD_LINE_START = re.compile(r"^(\s*\d{0,9})([-+#.)])(?=\s|$)")  # a list marker or heading at the start


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown text (a paragraph's words or a table cell): nothing in it becomes markup,
    raw HTML, a link, a list or a new table column, and it stays on one line.

    The characters that could start markup are backslash-escaped (``\\*``, ``\\<``, ``\\|``...); an underscore
    inside a word (``alexnet_int8``) is left alone, since it cannot emphasise there.
    """
    text = console_text(text)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    return _MD_LINE_START.sub(r"\1\\\2", text)


def markdown_code(text: str, table: bool = False) -> str:
    """``text`` as one Markdown code span (a file name, a path): a fence longer than any run of backticks in it,
    so it cannot close early; control characters as escapes; in a table cell (``table``) ``|`` escaped, so it
    cannot split the cell (GFM removes that backslash inside code spans too)."""
    text = console_text(text)
    if table:
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plot_text(text: str) -> str:
    """``text`` as a matplotlib label: ``$`` escaped (it would start mathtext), control characters as escapes."""
    return console_text(text).replace("$", "\\$")
