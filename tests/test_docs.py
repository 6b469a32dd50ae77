"""The documentation's code runs: the example cell of docs/adding_a_cell.md passes the shared suites unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _example_cell() -> str:
    text = (ROOT / "docs" / "adding_a_cell.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_mixer(" in b]
    return block


@pytest.mark.slow
def test_the_example_cell_passes_the_shared_suites(tmp_path):
    # Given the example file, registered in a fresh process (the registry is global), When the shared contract
    # suite and the adding learning test run with -k ema, Then they pass, and its options are validated.
    script = tmp_path / "run_example.py"
    script.write_text(
        "import sys\n"
        f"exec(compile({_example_cell()!r}, 'docs/adding_a_cell.md', 'exec'))\n"
        "from lrd.config import ModelConfig, ConfigError\n"
        "assert ModelConfig(name='ema', options={'ema': {'scan_mode': 'chunked', 'chunk_size': 8}}).mixers\n"
        "try:\n"
        "    ModelConfig(name='ema', options={'ema': {'decay_logit': 'high'}})\n"
        "    sys.exit('a bad option was accepted')\n"
        "except ConfigError as err:\n"
        "    assert 'model.options.ema.decay_logit' in str(err), err\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', 'ema',\n"
        "    'tests/test_mixers_shared.py', 'tests/test_mixers_learn.py']))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"\b7 passed\b", result.stdout), result.stdout[-2000:]


def _readme_commands() -> list[list[str]]:
    """Every ``lrd ...`` command of the README's shell blocks, split into arguments (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("lrd "):
                commands.append(line.split()[1:])
    return commands


def test_readme_has_commands():
    assert len(_readme_commands()) >= 10


@pytest.mark.parametrize("argv", _readme_commands(), ids=lambda argv: " ".join(argv))
def test_every_readme_command_builds_a_valid_config(argv):
    # Given a command of the README, Then it parses and its config validates (nothing is trained here).
    from lrd.bench import default_config
    from lrd.cli import _bench_model_pattern, config_from_args, parse

    args, extra = parse(argv)
    if args.command == "list":
        return
    if args.command == "bench":
        config = config_from_args(args, extra, base=default_config, prepare=_bench_model_pattern)
    else:
        config = config_from_args(args, extra)
    assert config.task.build().seq_len >= 1
