"""The README's commands and examples run as written on a fresh clone.

Shell lines are checked without running the (often long) work: every ``jaxlab`` command parses with
the real CLI parser, every ``jaxlab run`` config loads with its argument and ``--set`` overrides, every
``jaxlab bench`` name is registered and its script exists, and every ``python scripts/...`` file
exists (with its config argument loaded, where it takes one). The Python examples are executed, each
in a fresh interpreter in an empty folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jaxlab import cli
from jaxlab._registry import BENCHMARKS
from jaxlab.core import apply_overrides, load_config

from .quick_env import quick_compile_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    blocks, lang, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, lines = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(lines)))
                lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, "README.md has an unclosed fenced block"
    return blocks


def shell_commands(body: str) -> list[list[str]]:
    """Each command of a shell block as argv: continuations joined, comments and env assignments dropped.

    A ``for ... do CMD & done`` loop contributes CMD, with its loop variable (``$i``) read as 0.
    """
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        try:
            argv = shlex.split(line, comments=True)
        except ValueError as e:  # an unbalanced quote is a README bug
            raise AssertionError(f"README shell line does not parse: {line!r}: {e}") from None
        cmd: list[str] = []
        for t in argv + [";"]:
            end = t.endswith(";") and t != ";"
            t = t[:-1] if end else t
            if t in ("&&", ";", "&", "||"):
                out.append(cmd)
                cmd = []
            else:
                cmd.append("0" if re.fullmatch(r"\$\w+", t) else t)
                if end:
                    out.append(cmd)
                    cmd = []
    cleaned = []
    for cmd in filter(None, out):
        while cmd and (cmd[0] in ("export", "do", "then") or _ENV_ASSIGNMENT.match(cmd[0])):
            cmd = cmd[1:]
        if cmd and cmd[0] not in ("for", "done", "wait"):
            cleaned.append(cmd)
    return cleaned


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    return [c for lang, body in fenced_blocks(text) if lang in ("bash", "sh", "shell", "")
            for c in shell_commands(body)]


def readme_python_examples() -> list[str]:
    return [body for lang, body in fenced_blocks(README.read_text()) if lang == "python"]


def _ids(cmds):
    return [" ".join(c)[:60] for c in cmds]


JAXLAB = [c[1:] for c in readme_commands() if c[0] == "jaxlab"]
SCRIPTS = [c[1:] for c in readme_commands() if c[0] in ("python", "python3") and c[1:2] != ["-m"]]


def test_the_readme_shows_commands_of_every_kind():
    kinds = {c[0] for c in JAXLAB}
    assert {"run", "reproduce", "bench", "list", "solve"} <= kinds, kinds
    assert len(readme_python_examples()) >= 5
    first = fenced_blocks(README.read_text())[0][1]
    assert "jaxlab reproduce --quick" in first and "pytest" in first  # the first block: main job and tests


def test_the_command_parser_catches_a_bad_readme_line():
    # the check below must be able to fail
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run"])
    with pytest.raises(Exception, match="unknown config key"):
        apply_overrides(load_config(str(ROOT / "configs/examples/mlp_digits.py:quick"))[0], ["no_such_key=1"])


@pytest.mark.parametrize("argv", JAXLAB, ids=_ids(JAXLAB))
def test_readme_jaxlab_command_is_valid(argv, capsys):
    args = cli.build_parser().parse_args(argv)
    if args.command == "run":
        config, _ = load_config(str(ROOT / args.config))
        apply_overrides(config, args.set or [])
    elif args.command == "bench":
        assert args.name in BENCHMARKS, f"README: jaxlab bench {args.name}: not registered"
        assert (ROOT / "scripts" / BENCHMARKS[args.name]).is_file()
    elif args.command == "solve":
        assert (ROOT / args.matrix).is_file(), args.matrix
    elif args.command == "reproduce":
        from jaxlab._registry import EXPERIMENTS

        names = {e.name for e in EXPERIMENTS}
        assert not (set(args.only or []) - names), args.only


@pytest.mark.parametrize("argv", SCRIPTS, ids=_ids(SCRIPTS))
def test_readme_script_command_is_valid(argv):
    script = ROOT / argv[0]
    assert script.is_file(), f"README names {argv[0]}, which does not exist"
    for a in argv[1:]:
        if a.startswith("configs/"):
            load_config(str(ROOT / a))


_RUNNER = """
import json, sys, traceback
failures = []
for i, body in enumerate(json.load(sys.stdin)):
    try:
        exec(compile(body, f"README example {i + 1}", "exec"), {"__name__": "__main__"})
    except Exception:
        failures.append(f"example {i + 1}:\\n{body}\\n{traceback.format_exc(limit=-3)}")
print("\\n\\n".join(failures), file=sys.stderr)
sys.exit(1 if failures else 0)
"""


def test_readme_python_examples_run(tmp_path):
    """Each example in its own namespace (its own imports, nothing carried over), in an empty folder.

    One interpreter runs them all, to pay jax's import once; it compiles at backend level 0 (quick_env.py):
    44 -> 18.5 CPU-s (measured on an idle host; the Informer example alone compiles 287 small programs).
    """
    import json

    env = quick_compile_env(dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                                 XLA_FLAGS="", JAX_PLATFORMS="cpu"))
    r = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(readme_python_examples()), cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
