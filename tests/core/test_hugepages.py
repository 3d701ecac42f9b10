"""nnip.core.hugepages: the commands stop numpy's huge-page advice unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs in a fresh interpreter (the setting is process-wide): prints what prefer_small_pages
# returned (or "-" for the CLI entry) and whether numpy still advises huge pages afterwards.
_PROBE = """
import sys
from numpy._core.multiarray import _set_madvise_hugepage
if sys.argv[1] == "cli":
    from nnups.cli import main
    try:
        main(["--version"])
    except SystemExit:
        pass
    changed = "-"
else:
    from nnip.core.hugepages import prefer_small_pages
    changed = prefer_small_pages()
advising = _set_madvise_hugepage(False)  # returns the setting it replaces
print(changed, advising)
"""


def _probe(mode: str, switch: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if switch is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = switch
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                          env=env, check=True)
    return done.stdout.split("\n")[-2]


@pytest.mark.skipif(sys.platform != "linux", reason="numpy advises huge pages on Linux only")
def test_the_advice_is_switched_off_unless_the_user_chose() -> None:
    assert _probe("call", None) == "True False"
    assert _probe("call", "1") == "False True"  # the user's NUMPY_MADVISE_HUGEPAGE=1 stays
    assert _probe("cli", None) == "- False"  # the command entry point applies it
    assert _probe("cli", "1") == "- True"
