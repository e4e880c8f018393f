"""
The guide cannot rot: every C{```python} block of C{docs/guide.md} whose
first line is C{# runnable} runs in a child process (killed after a
timeout) and must exit 0; a C{```text} block right after it (blank lines
between at most) is its expected stdout, compared exactly.

One test per snippet, named after its section.  When trial runs under the
asyncio reactor, so do the snippets (except those installing a reactor
themselves).
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, NamedTuple, Optional

from twisted.trial.unittest import TestCase

from tests._util import ROOT, ChildProcess, as_deferred
from tests.test_examples import TIMEOUT, script_args

GUIDE = os.path.join(ROOT, "docs", "guide.md")
RUNNABLE = "# runnable"

#: Sections that must each hold at least one runnable snippet.
REQUIRED_SECTIONS = (
    "mpsc", "broadcast", "spsc", "barrier", "channel", "multi_channel",
    "the inlinecallbacks form", "addresses", "codecs", "accepting connections",
    "retry=", "reconnect=", "timeouts", "closing", "errors", "async for",
    "recv_many and send_many", "using the asyncio reactor",
)


class Snippet(NamedTuple):
    """
    One runnable block of the guide.
    """

    section: str
    line: int
    code: str
    expected: Optional[str]


def parse(text: str) -> List[Snippet]:
    """
    The runnable snippets of a Markdown text, each with its section (the
    last C{##} heading), its first line number and its expected output.
    """
    snippets: List[Snippet] = []
    section = ""
    lines = text.splitlines()
    i = 0

    def block_at(start: int) -> Optional[tuple]:
        # (language, body lines, index after the closing fence)
        opening = re.match(r"^```(\w*)\s*$", lines[start])
        if not opening:
            return None
        end = start + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"unclosed code block at line {start + 1}")
        return opening.group(1), lines[start + 1:end], end + 1

    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        block = block_at(i)
        if block is None:
            i += 1
            continue
        language, body, after = block
        if language == "python" and body and body[0].strip() == RUNNABLE:
            expected = None
            j = after
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines):
                following = block_at(j)
                if following is not None and following[0] == "text":
                    expected = "\n".join(following[1]) + "\n"
                    after = following[2]
            snippets.append(Snippet(section, i + 2, "\n".join(body) + "\n", expected))
        i = after
    return snippets


def read_guide() -> str:
    with open(GUIDE, encoding="utf-8") as f:
        return f.read()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class GuideStructureTests(TestCase):
    """
    The guide has what the snippet tests rely on.
    """

    def test_sections_have_snippets(self) -> None:
        """
        Each primitive and topic has a section with a runnable snippet.
        """
        covered = {s.section.lower() for s in parse(read_guide())}
        for required in REQUIRED_SECTIONS:
            matching = [c for c in covered if c == required or c.startswith(required + ":")
                        or c.startswith(required + " ")]
            self.assertTrue(matching, f"no runnable snippet in a section {required!r}")

    def test_snippets_listen_on_port_zero(self) -> None:
        """
        Snippets never use a fixed port, so they run anywhere, in parallel.
        """
        for snippet in parse(read_guide()):
            self.assertNotRegex(snippet.code, r"127\.0\.0\.1:[1-9]", snippet.section)

    def test_links(self) -> None:
        """
        Links to sections of the guide point at real headings (GitHub's
        anchors), and relative links at files that exist.
        """
        text = read_guide()
        anchors = set()
        for heading in re.findall(r"^#+ (.+)$", text, re.M):
            anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            anchors.add(anchor)
        for target in re.findall(r"\]\(#([^)]+)\)", text):
            self.assertIn(target, anchors)
        for target in re.findall(r"\]\((\.\./[^)#]+|[\w.-]+\.md)\)", text):
            self.assertTrue(os.path.exists(os.path.join(ROOT, "docs", target)), target)

    def test_parser(self) -> None:
        """
        The parser finds runnable blocks only, with their output blocks.
        """
        text = (
            "## One\n```python\nprint(1)\n```\n"
            "```python\n# runnable\nprint(2)\n```\n\n```text\n2\n```\n"
            "## Two: more\n```python\n# runnable\nprint(3)\n```\nprose\n```text\n3\n```\n"
        )
        self.assertEqual(
            parse(text),
            [Snippet("One", 6, "# runnable\nprint(2)\n", "2\n"),
             Snippet("Two: more", 15, "# runnable\nprint(3)\n", None)],
        )


class GuideSnippetTests(TestCase):
    """
    One test per runnable snippet, added below.
    """

    async def run_snippet(self, snippet: Snippet) -> None:
        path = os.path.abspath(self.mktemp()) + ".py"
        with open(path, "w", encoding="utf-8") as f:
            f.write(snippet.code)
        if "asyncioreactor.install" in snippet.code:
            args = [path]  # it chooses its reactor itself
        else:
            args = script_args(path)
        child = ChildProcess(args)
        status, out, err = await child.finish(TIMEOUT)
        where = f"docs/guide.md line {snippet.line} ({snippet.section})"
        report = f"{where}: exit status {status}\n--- stdout\n{out.decode()}\n--- stderr\n{err.decode()}"
        self.assertEqual(status, 0, report)
        if snippet.expected is not None:
            self.assertEqual(out.decode("utf-8", "replace"), snippet.expected, report)


def _add_snippet_tests() -> None:
    names: Dict[str, int] = {}
    for snippet in parse(read_guide()):
        base = f"test_{slug(snippet.section)}"
        names[base] = names.get(base, 0) + 1
        name = base if names[base] == 1 else f"{base}_{names[base]}"

        def test(self: GuideSnippetTests, snippet: Snippet = snippet) -> Any:
            return as_deferred(self.run_snippet)(snippet)

        test.__name__ = name
        test.__doc__ = f"The snippet at docs/guide.md line {snippet.line} ({snippet.section})."
        setattr(GuideSnippetTests, name, test)


_add_snippet_tests()
