"""The one exception type for mistakes a user can fix (bad flags, files, data).

Entry points catch it and print its message alone, without a traceback: the
message must name the file or flag at fault and say what to do about it.
"""


class UserError(Exception):
  """A problem with the user's input, with a message that says how to fix it."""


def summary(e: BaseException, limit: int = 200) -> str:
  """'TypeName: the first line of its message' (at most `limit` characters of that line),
  for a one-line UserError about a library's multi-line exception."""
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0][:limit]}" if lines else type(e).__name__
