"""The documentation site: it builds strictly, its code runs, and its references cannot drift.

Code blocks in ``docs/*.md``:

- every ```` ```python ```` block runs, in page order and one namespace per page, against a
  FakeOllama that ``OLLAMA_HOST`` points at (``fake`` in the namespace; ``start_fake()``
  starts more);
- ``<!-- docs-test: skip (reason) -->`` on the line before a block skips it (a real GPU, a
  real Ollama binary, ...); the reason is mandatory;
- ``<!-- docs-test: setup`` ... ``-->`` before a block is hidden code run just before it;
- every ```` ```yaml ```` block parses, and every ``ollama-ready`` command line in the docs
  parses with the real argument parser.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ollama_ready.cli import EXIT_CODES, build_parser
from ollama_ready.testing import FakeOllama

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
_SKIP = re.compile(r"^<!-- docs-test: skip \((?P<reason>[^)]+)\) -->$")
_SETUP = "<!-- docs-test: setup"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None = None
    setup: str = ""


def blocks(page: Path) -> list[Block]:
    """Return the fenced code blocks of ``page`` with their test annotations."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    skip: str | None = None
    setup: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if line.startswith(_SETUP):
            index += 1
            while lines[index].strip() != "-->":
                setup.append(lines[index])
                index += 1
        elif (match := _SKIP.match(line)) is not None:
            skip = match["reason"]
        elif fence is not None and fence["lang"]:
            start = index + 1
            index = start
            while not lines[index].startswith("```"):
                index += 1
            code = "\n".join(lines[start:index]) + "\n"
            found.append(Block(page.name, start, fence["lang"], code, skip, "\n".join(setup)))
            skip, setup = None, []
        elif line.strip():
            skip, setup = None, []
        index += 1
    return found


def python_pages() -> list[Path]:
    return [page for page in PAGES if any(b.lang == "python" for b in blocks(page))]


# --------------------------------------------------------------------------- code blocks


@pytest.fixture
def docs_namespace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:

        def start_fake(**kwargs: Any) -> FakeOllama:
            return stack.enter_context(FakeOllama(**{"tick": 0.005, **kwargs}))

        fake = start_fake()
        monkeypatch.setenv("OLLAMA_HOST", fake.url)
        monkeypatch.setenv("OLLAMA_READY_PROGRESS", "lines")
        monkeypatch.chdir(tmp_path)
        yield {"__name__": "__docs__", "fake": fake, "start_fake": start_fake}


@pytest.mark.parametrize("page", python_pages(), ids=lambda page: page.name)
def test_python_blocks_run(page: Path, docs_namespace: dict[str, Any]) -> None:
    ran = 0
    for block in blocks(page):
        if block.lang != "python" or block.skip is not None:
            continue
        where = f"{block.page}:{block.line}"
        if block.setup:
            exec(compile(block.setup, f"{where} (setup)", "exec"), docs_namespace)
        exec(compile(block.code, where, "exec"), docs_namespace)
        ran += 1
    assert ran, f"{page.name}: every python block is skipped"


def test_skipped_blocks_give_a_reason() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("<!-- docs-test"):
                assert _SKIP.match(line) or line.startswith(_SETUP), f"{page.name}: {line}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_yaml_blocks_parse(page: Path) -> None:
    yaml = pytest.importorskip("yaml")
    for block in blocks(page):
        if block.lang == "yaml":
            documents = list(yaml.safe_load_all(block.code))
            assert all(isinstance(doc, dict) for doc in documents), f"{page.name}:{block.line}"


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """Yield every ``ollama-ready`` invocation in the docs, as its arguments."""
    for page in PAGES:
        for block in blocks(page):
            if block.lang == "console":
                for line in block.code.splitlines():
                    if line.startswith("$ ") and "ollama-ready " in line:
                        words = shlex.split(line[2:], comments=True)
                        yield f"{page.name}:{block.line}", words[words.index("ollama-ready") + 1 :]
            elif block.lang == "yaml":
                for found in re.findall(r'\["(?:CMD", ")?ollama-ready", ([^\]]*)\]', block.code):
                    yield (
                        f"{page.name}:{block.line}",
                        [w.strip().strip('"') for w in found.split(",")],
                    )
                for found in re.findall(r"exec ollama-ready (.*)", block.code):
                    yield f"{page.name}:{block.line}", shlex.split(found)


def test_every_command_line_in_the_docs_parses() -> None:
    parser = build_parser()
    seen = 0
    for where, args in command_lines():
        seen += 1
        if args and args[0] in {"COMMAND", "wait", "pull", "check"} and "[" in " ".join(args):
            continue  # a synopsis such as "check [--level LEVEL]", not a command
        try:
            with contextlib.redirect_stderr(open(os.devnull, "w")):
                parser.parse_args(args)
        except SystemExit as exc:
            pytest.fail(f"{where}: `ollama-ready {shlex.join(args)}` does not parse ({exc.code})")
    assert seen >= 10


# --------------------------------------------------------------------------- CLI reference


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no subcommands")


def sections(page: Path) -> dict[str, str]:
    """Return the page's ``## `` sections by title."""
    parts = re.split(r"^## (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_cli_reference_documents_every_subcommand_and_option() -> None:
    docs = sections(DOCS / "cli.md")
    common = docs["Common options"]
    for name, sub in subcommands().items():
        title = f"`ollama-ready {name}`"
        assert title in docs, f"docs/cli.md has no section {title}"
        body = docs[title]
        for action in sub._actions:
            if not action.option_strings:
                metavar = action.metavar or action.dest.upper()
                assert f"`{metavar}" in body, f"{title}: positional {metavar} is not documented"
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                documented = re.search(rf"`{re.escape(option)}[` ]", body + common)
                assert documented, f"{title}: {option} is not documented"


def test_cli_reference_documents_no_stale_option() -> None:
    docs = sections(DOCS / "cli.md")
    for name, sub in subcommands().items():
        known = {option for action in sub._actions for option in action.option_strings}
        body = docs[f"`ollama-ready {name}`"]
        for option in re.findall(r"`(--[a-z][a-z0-9-]*)", body):
            assert option in known, f"`ollama-ready {name}`: {option} does not exist"


def test_cli_reference_documents_every_exit_code() -> None:
    table = sections(DOCS / "cli.md")["Exit codes"]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}
    assert documented == set(EXIT_CODES)


# --------------------------------------------------------------------------- troubleshooting

#: Every error text Ollama, its clients or the seed's init container is known to print (seed
#: 000 and the protocol notes), as a distinctive part of the message.
KNOWN_MESSAGES = (
    "connect ECONNREFUSED",
    "Connection refused to ollama:11434",
    "Could not connect to Ollama",
    "Failed to connect to Ollama",
    "model 'gpt-oss:20b' not found",
    "not found, try pulling it first",
    "context deadline exceeded",
    "no space left on device",
    "pull model manifest: file does not exist",
    "requires a newer version of Ollama",
    "invalid model name",
    "missing request body",
    "model is required",
    "insecure protocol http",
    "server gave HTTP response to HTTPS client",
    "unauthorized: access denied",
    "max retries exceeded",
    "connect: connection refused",
    "no such host",
    "digest mismatch",
    "requires MLX support",
    "server busy, please try again.  maximum pending requests exceeded",
    "request canceled",
    "context canceled",
    "does not support generate",
    "model requires more system memory",
    "403 with an **empty body**",
    "404 page not found",
    "an HTML page instead of JSON",
    "no suitable llama servers found",
    "llama runner process no longer running",
    "may have noexec set",
    "executable file not found in $PATH",
    "unable to locate runners in any search path",
    "CPU does not have minimum vector extensions",
    "GPU runner incompatible with host system",
    "Dynamic LLM libraries runners=[cpu]",
    "Invalid OLLAMA_LLM_LIBRARY",
    "kfd driver not loaded",
    "unexpected end of progress response",
    "couldn't remove unused layers",
)


def test_troubleshooting_maps_every_known_message_to_cause_and_fix() -> None:
    rows = []
    for line in (DOCS / "troubleshooting.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| message") and "---" not in line:
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows.append(cells)
    for message in KNOWN_MESSAGES:
        matching = [cells for cells in rows if message in cells[0]]
        assert matching, f"troubleshooting.md does not explain {message!r}"
        for cells in matching:
            assert len(cells) == 3, cells
            cause, fix = cells[1], cells[2]
            assert len(cause) > 20, f"{message!r}: no cause"
            assert len(fix) > 15, f"{message!r}: no fix"


# --------------------------------------------------------------------------- the site


def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("ensure_model", "wait_until_ready", "OllamaClient", "FakeOllama", "NotReadyError"):
        assert 'id="ollama_ready.' in api
        assert name in api, f"the API reference lacks {name}"
    for page in PAGES:
        built = tmp_path / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"
