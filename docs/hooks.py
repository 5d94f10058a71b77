"""MkDocs hook: the home page is the README, which links files as ``docs/<page>.md``.

Those paths are right on GitHub (the README sits at the repository root) and wrong on the
site (the home page sits in ``docs/``). On the home page only, this hook includes the README (the
``--8<-- "README.md"`` line of ``docs/index.md``; the hook runs before the snippets extension
would) and rewrites the
Markdown links ``](docs/x.md)`` to ``](x.md)`` and turns the README's code-span mentions of
pages (``docs/x.md``) into links, so every page the README names is a link that the strict
build checks.
"""

from __future__ import annotations

import re
from pathlib import Path

_DOCS = Path(__file__).parent
_INCLUDE = '--8<-- "README.md"'
_LINK = re.compile(r"\]\(docs/")
_MENTION = re.compile(r"(?<!\[)`docs/([\w/.-]+\.md)`")


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "index.md":
        return markdown
    readme = (_DOCS.parent / "README.md").read_text(encoding="utf-8")
    markdown = markdown.replace(_INCLUDE, _LINK.sub("](", readme))

    def link(match: re.Match) -> str:
        name = match.group(1)
        return f"[`docs/{name}`]({name})" if (_DOCS / name).is_file() else match.group(0)

    return _MENTION.sub(link, markdown)
