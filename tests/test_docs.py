"""The docs are held to the code: the README stays a short start, every page says what it
answers, every link resolves, and every command, flag, make target and setting the docs
name exists. (The docs' queries run in tests/test_docs_queries.py; the settings reference
is held to the template in tests/test_infra.py.)"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from collector.cli import build_parser
from collector.core.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
EVERY_DOC = [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *PAGES]
SETTING_LIKE = re.compile(
    r"`((?:COLLECTOR|GRAPH|ARCHIVE|VNET|APP_SUBNET|PRIVATE|STORAGE|ALERT|MULTI|GRANT|NO_SUCCESS"
    r"|FAILURE|LAG|FAILED|PROVIDER)_[A-Za-z0-9_]+)"
)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def _subcommands() -> dict[str, set[str]]:
    """Each ``python -m collector`` subcommand and its options."""
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: set(p._option_string_actions) for name, p in commands.choices.items()}


def test_the_readme_is_a_short_start_with_three_quick_starts() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for start in ("deploy to Azure", "try it locally", "read the data"):
        assert re.search(rf"^## Quick start \d: {start}$", text, flags=re.M), start
    assert "```mermaid" in text and "azd up" in text and "make demo" in text
    assert "CallRecords.Read.All" in text and "admin/functions/collect_call_logs" in text


@pytest.mark.parametrize("page", [*PAGES, ROOT / "CONTRIBUTING.md"], ids=lambda p: p.name)
def test_every_page_starts_with_the_question_it_answers(page: Path) -> None:
    head = page.read_text().splitlines()[:6]
    assert head[0].startswith("# ")
    assert any(line.startswith("**What this answers:**") for line in head), page


def test_every_link_between_the_docs_resolves_to_a_file_and_heading() -> None:
    broken = []
    for doc in EVERY_DOC:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_collector_command_and_option_the_docs_name_exists() -> None:
    commands = _subcommands()
    named = 0
    for doc in EVERY_DOC:
        for line in doc.read_text().splitlines():
            for match in re.finditer(
                r"python -m collector (\w[\w-]*)((?: \[?--[\w-]+[^`\]]*\]?)*)", line
            ):
                sub, rest = match[1], match[2]
                assert sub in commands, f"{doc.name}: python -m collector {sub}"
                for option in re.findall(r"--[\w-]+", rest):
                    assert option in commands[sub], f"{doc.name}: {sub} {option}"
                named += 1
    assert named >= 5


def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w.-]+):", makefile, flags=re.M))
    for doc in EVERY_DOC:
        # In code: `make x` inline, or a code block's line starting with it.
        for target in re.findall(r"(?:^|`)make ([a-z][\w-]*)", doc.read_text(), flags=re.M):
            assert target in targets, f"{doc.name}: make {target}"


def test_every_setting_or_azd_variable_the_docs_name_exists() -> None:
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text())
    azd = set(re.findall(r"\$\{(\w+)", json.dumps(parameters)))
    outputs = set(re.findall(r"^output (\w+) ", (ROOT / "infra" / "main.bicep").read_text(), re.M))
    hooks = "\n".join(p.read_text() for p in (ROOT / "infra" / "hooks").glob("*.sh"))
    known = set(SETTING_NAMES) | azd | outputs
    unknown = {
        f"{doc.name}: {name}"
        for doc in EVERY_DOC
        for name in SETTING_LIKE.findall(doc.read_text())
        if name not in known
        and name not in hooks
        and not (name.endswith("_") and any(k.startswith(name) for k in known))  # X_*
    }
    assert not unknown, sorted(unknown)
