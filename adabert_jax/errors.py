"""The one exception type for mistakes a user can fix (bad flags, files, data).

Entry points catch it and print its message alone, without a traceback: the
message must name the file or flag at fault and say what to do about it.
"""


class UserError(Exception):
  """A problem with the user's input, with a message that says how to fix it."""
