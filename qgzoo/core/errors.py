"""The one error type for faults a user can fix.

``UserError`` is raised for what comes from outside the code: a file that is
missing, truncated or corrupt, a folder that belongs to something else, a name
that is not in the zoo, a spec that cannot work. Its message names the file,
folder or field and says what to do; the ``qgzoo`` command prints it as one
line and exits with status 2. Any other exception is a bug in qgzoo or a
plugin (status 1).
"""

from __future__ import annotations


class UserError(Exception):
    """A fault of the input that the user can fix; the message names it and the fix."""
