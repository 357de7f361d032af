"""The docs' runnable examples run and print what the pages say (conventions in
``docs_snippets.py``), the table of contents lists every page, and the pages' links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docs_snippets import DOCS, ROOT, blocks, expected_lines_missing, run_page

#: The pages with examples a test runs, and how many run blocks each has at least.
RUNNABLE = {
    "getting-started.md": 4,
    "configuration.md": 3,
    "deploying.md": 2,
    "troubleshooting.md": 2,
    "report.md": 4,
    "cold-starts.md": 2,
    "resources.md": 2,
    "instrumentation.md": 2,
    "propagation.md": 2,
    "opentelemetry.md": 2,
    "exporters.md": 2,
    "reliability.md": 1,
    "collector.md": 3,
    "dashboard.md": 1,
    "alerts.md": 3,
    "profiling.md": 2,
}
#: Pages whose links are checked (the ones this suite owns, and the table of contents).
CHECKED_LINKS = [*RUNNABLE, "comparison.md", "index.md"]


@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_the_runnable_examples_of_the_page_succeed_and_print_what_it_says(
    page: str, tmp_path: Path
) -> None:
    outcomes = run_page(DOCS / page, tmp_path)
    ran = [o for o in outcomes if o.skipped is None]
    assert ran, f"{page}: every example was skipped: {[o.skipped for o in outcomes]}"
    for outcome in ran:
        where = outcome.block.where
        assert outcome.status == 0, (
            f"{where} exited {outcome.status}:\n{outcome.block.code}\n--- output ---\n"
            f"{outcome.output[-4000:]}"
        )
        if outcome.block.expected is not None:
            missing = expected_lines_missing(outcome.block.expected, outcome.output)
            assert not missing, (
                f"{where}: the page says the output has {missing}\n--- output ---\n"
                f"{outcome.output[-4000:]}"
            )


@pytest.mark.parametrize(("page", "least"), sorted(RUNNABLE.items()))
def test_each_feature_page_has_runnable_examples_with_outputs(page: str, least: int) -> None:
    found = [b for b in blocks(DOCS / page) if b.kind == "run"]
    assert len(found) >= least, f"{page}: {len(found)} runnable examples, expected {least}"
    assert any(b.expected for b in found), f"{page}: no example shows its output"


def test_the_harness_fails_a_failing_example_and_a_wrong_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: data.txt -->\n```text\nhello\n```\n\n"
        "<!-- run -->\n```sh\ncat data.txt\necho 'the end'\n```\n\n"
        "<!-- output -->\n```text\nhello\nthe …\n```\n\n"
        "<!-- run -->\n```python\nprint('right')\n```\n\n"
        "<!-- output -->\n```text\nwrong\n```\n\n"
        "<!-- run -->\n```sh\nexit 3\n```\n\n"
        "<!-- run requires=no_such_module_anywhere -->\n```sh\nexit 4\n```\n",
        encoding="utf-8",
    )
    work = tmp_path / "work"
    work.mkdir()
    first, second, third, fourth = run_page(page, work)
    assert first.status == 0 and first.block.expected is not None
    assert expected_lines_missing(first.block.expected, first.output) == []
    assert second.status == 0 and second.block.expected is not None
    assert expected_lines_missing(second.block.expected, second.output) == ["wrong"]
    assert third.status == 3
    assert fourth.skipped == "no_such_module_anywhere is not available"


def test_the_table_of_contents_lists_every_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", index))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages - linked == set(), f"docs/index.md does not list {sorted(pages - linked)}"
    assert linked - pages == set(), f"docs/index.md lists missing pages {sorted(linked - pages)}"


@pytest.mark.parametrize("page", CHECKED_LINKS)
def test_relative_links_of_the_page_resolve(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        resolved = (DOCS / path).resolve()
        if not resolved.exists() or ROOT not in resolved.parents:
            broken.append(target)
    assert not broken, f"{page}: links to missing files {broken}"
