"""``python -m ollama_ready``: the same as the ``ollama-ready`` command."""

from __future__ import annotations

import sys

from ollama_ready.cli import main

if __name__ == "__main__":
    sys.exit(main())
