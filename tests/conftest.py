import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def trainperf_home(tmp_path_factory):
    """Keep every test's corpus cache out of the user's home; reuse it across the session.

    CI sets TRAINPERF_HOME to a folder inside the clone; otherwise a session temp folder is used.
    """
    if "TRAINPERF_HOME" not in os.environ:
        os.environ["TRAINPERF_HOME"] = str(tmp_path_factory.mktemp("trainperf_home"))
    return Path(os.environ["TRAINPERF_HOME"])
