"""Version information of the library.

``version`` is for humans (``aiocoap-client --version``, log lines, the
impl-info link); do not base decisions on it, use package dependencies.
"""

version = "0.5.0.dev0"

library_uri = "https://pypi.org/project/aiocoap/#version-" + version
"""URI describing this version, used e.g. as the default rel=impl-info link
of ``.well-known/core``."""

bugreport_uri = "https://pypi.org/project/aiocoap/"
"""Where to report problems with the library (the project page, which links
the issue tracker); tools print it next to crash reports."""
