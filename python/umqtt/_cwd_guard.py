"""``python -m umqtt run SCRIPT`` is usually started in the device project's folder, and
``python -m`` puts that folder first on ``sys.path``: a project's own ``logging.py``,
``threading.py`` or ``socket.py`` (QuecPython projects ship such modules) would then replace
CPython's under umqtt itself. Imported first by the package, this takes the folder off the
path for that one command; the runner gives the project its folder (and its own modules)
back."""

import os
import sys

# While `python -m` imports the package, sys.argv is ["-m", *arguments].
if sys.argv[:2] == ["-m", "run"] and sys.path[:1] in ([""], [os.getcwd()]):
    del sys.path[0]
