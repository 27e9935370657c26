"""MkDocs hook: the tables a page marks (`<!-- generated: NAME -->`) rendered from the code at build time.

Named in mkdocs.yml (`hooks:`); the renderer and the table names are `reflection_assets.commands.config_docs`'s.
"""

from __future__ import annotations

from typing import Any

from mkdocs.exceptions import PluginError


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    from reflection_assets.commands.config_docs import render_generated

    try:
        return render_generated(markdown, page.file.src_path)
    except KeyError as exc:
        raise PluginError(str(exc.args[0])) from exc
