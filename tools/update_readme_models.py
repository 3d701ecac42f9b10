"""Rewrite README.md's models table from onnx_models/manifest.json (tests/test_readme.py checks it).

    python tools/update_readme_models.py
"""

from __future__ import annotations

from pathlib import Path

from nnip.core.models import Registry, default_models_dir, models_table

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- BEGIN models-table", "<!-- END models-table -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n", text.index(BEGIN)) + 1
    table = "\n".join(models_table(Registry(default_models_dir()), markdown=True))
    README.write_text(text[:start] + table + "\n" + text[text.index(END):], encoding="utf-8")


if __name__ == "__main__":
    main()
