"""README stays true: its models table is the manifest's, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from nnip.core.models import Registry, default_models_dir, models_table

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- BEGIN models-table"
END = "<!-- END models-table -->"


def _readme_table() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text[text.index(BEGIN) : text.index(END)]
    return [line for line in block.splitlines()[1:] if line.strip()]


def test_models_table_matches_the_manifest() -> None:
    expected = models_table(Registry(default_models_dir()), markdown=True)
    assert _readme_table() == expected, (
        "README's models table is stale; run `python tools/update_readme_models.py`:\n"
        + "\n".join(expected)
    )


def test_readme_names_the_bundled_examples() -> None:
    text = README.read_text(encoding="utf-8")
    for path in re.findall(r"examples/[\w.*-]+", text):
        matches = list(README.parent.glob(path))
        assert matches, f"README mentions {path}, which does not exist"
