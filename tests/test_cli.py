"""`lrd` command line: one config path for every command, list, a short train run, clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lrd.cli import BENCH_SHORTHANDS, CONFIG_SHORTHANDS, config_from_args, main, parse
from lrd.config import ExperimentConfig
from lrd.errors import ConfigError


def test_list_prints_models_and_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("lstm", "gru", "rnn", "adding", "copy"):
        assert f"  {name} " in out


def test_train_smoke_prints_summary(capsys):
    code = main(
        [
            "train",
            "--model",
            "lstm",
            "--task",
            "adding",
            "--lag",
            "10",
            "--steps",
            "6",
            "--eval-every",
            "3",
            "--hidden-size",
            "8",
            "--batch-size",
            "4",
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["steps_run"] == 6 and summary["task"]["task"] == "adding" and summary["task"]["lag"] == 10


def _run_cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "lrd.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--model", "lstmm"], "model.name='lstmm' is unknown; allowed values:"),
        (["--task", "adder"], "task.name='adder' is unknown; allowed values:"),
        (["--lag", "-3"], "task.lag must be a positive int"),
        (["--steps", "0"], "run.steps must be a positive int"),
        (["--learning-rate", "inf"], "optim.learning_rate must be a finite number > 0"),
        (
            ["--model", "lru", "--truncation", "9", "--lag", "8"],
            "model.truncation=9 exceeds the sequence length 8",
        ),
        (["--model", "attention", "--truncation", "4"], "model.truncation=4 cannot be applied to mixer"),
        (["--hidden_size", "4"], "unrecognised argument '--hidden_size'"),
    ],
)
def test_bad_input_exits_nonzero_with_a_clear_message(args, expected):
    result = _run_cli("train", *args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_task_options_reach_the_task(capsys):
    code = main(
        ["train", "--task", "adding", "--lag", "20", "--task-option", "variant=hochreiter", "--steps", "2"]
        + ["--eval-every", "2", "--hidden-size", "4", "--batch-size", "2", "--json"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["task"]["variant"] == "hochreiter"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--task-option", "nonsense"], "KEY=VALUE"),
        (["--task-option", "colour=3"], "no option(s) ['colour']"),
    ],
)
def test_bad_task_options_exit_nonzero(args, expected):
    result = _run_cli("train", *args)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_missing_mnist_data_is_a_clear_error(tmp_path):
    env_dir = str(tmp_path / "no_data_here")
    result = _run_cli("train", "--task", "smnist", "--task-option", f"data_dir={json.dumps(env_dir)}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mnist" in result.stderr.lower()


# ----------------------------------------------------------------------------------------------------------------
# One config path


def _config(command: str, *argv: str) -> ExperimentConfig:
    args, extra = parse([command, *argv])
    return config_from_args(args, extra)


# (shorthand flag, a valid value); every flag of `lrd train` is listed, which the next test checks.
TRAIN_FLAG_VALUES = {
    "--model": "gru",
    "--hidden-size": "16",
    "--num-layers": "2",
    "--setting": "block",
    "--truncation": "7",
    "--task": "copy",
    "--lag": "30",
    "--task-option": "num_symbols=4",
    "--batch-size": "8",
    "--learning-rate": "0.003",
    "--clip-norm": "0.5",
    "--steps": "300",
    "--num-seeds": "3",
    "--seed": "5",
    "--eval-every": "50",
    "--no-early-stop": None,
    "--workdir": "runs/x",
}


def test_every_train_flag_is_listed_in_the_table_test():
    assert set(TRAIN_FLAG_VALUES) == {shorthand.flag for shorthand in CONFIG_SHORTHANDS}


@pytest.mark.parametrize("shorthand", CONFIG_SHORTHANDS, ids=lambda sh: sh.flag)
@pytest.mark.parametrize("command", ["train", "run", "lag-search"])
def test_each_flag_is_exactly_its_dotted_override(command, shorthand):
    # Given a shorthand flag and its dotted form, Then both build the same config, which differs from the
    # defaults in that field and nowhere else.
    value = TRAIN_FLAG_VALUES[shorthand.flag]
    flag_argv = [shorthand.flag] if value is None else [shorthand.flag, value]
    if shorthand.constant is not None:
        dotted_argv = [f"--{shorthand.key}", shorthand.constant]
    elif shorthand.entries:
        key, _, raw = value.partition("=")
        dotted_argv = [f"--{shorthand.key}.{key}", raw]
    else:
        dotted_argv = [f"--{shorthand.key}", value]
    # copy needs lag >= the truncation; keep the other fields at their defaults otherwise
    context = ["--task.name", "copy", "--task.lag", "30"] if shorthand.key.startswith("task.options") else []
    by_flag = _config(command, *context, *flag_argv)
    by_dotted = _config(command, *context, *dotted_argv)
    assert by_flag == by_dotted
    section, field = shorthand.key.split(".")[:2]
    base = _config(command, *context)
    assert getattr(by_flag, section) != getattr(base, section)
    changed = [
        name
        for name in ("model", "task", "optim", "run", "search", "bench")
        if getattr(by_flag, name) != getattr(base, name)
    ]
    assert changed == [section]


@pytest.mark.parametrize("shorthand", BENCH_SHORTHANDS, ids=lambda sh: sh.flag)
def test_each_bench_flag_is_exactly_its_dotted_override(shorthand):
    values = {"--models": "lstm,gru", "--d-model": "8", "--seq-len": "64,128", "--batch-size": "4"}
    values |= {"--repeats": "3", "--warmup": "1", "--peer": "gru", "--seed": "2"}
    values |= {"--suite": "scan", "--peers": "flax_lstm,scan_lstm"}
    value = values.get(shorthand.flag)
    flag_argv = [shorthand.flag] if value is None else [shorthand.flag, value]
    dotted_argv = [f"--{shorthand.key}", shorthand.constant if value is None else value]
    from lrd.bench import default_config

    def build(*argv):
        args, extra = parse(["bench", *argv])
        return config_from_args(args, extra, base=default_config)

    assert build(*flag_argv) == build(*dotted_argv) != build()
    assert build("--models", "all").bench.models == ()


@pytest.mark.parametrize(
    "argv",
    [
        ["--model.hidden_size", "0"],
        ["--task.lag", "-1"],
        ["--model.name", "lru", "--model.options.lru.chunk_size", "8"],
        ["--model.name", "mlstm", "--model.truncation", "3"],
        ["--optim.weight_decay", "0.1"],
        ["--model.options.lstm.nonsense", "1"],
        ["--lag", "5", "--task.lag", "6"],
    ],
)
def test_train_and_run_reject_a_config_with_the_same_message(argv, tmp_path):
    messages = {}
    for command in ("train", "run", "lag-search"):
        with pytest.raises(ConfigError) as info:
            _config(command, "--workdir", str(tmp_path / command), *argv)
        messages[command] = str(info.value)
    assert len(set(messages.values())) == 1, messages
    result = _run_cli("train", *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"lrd train: error: {messages['train']}"


def test_train_accepts_every_dotted_override(capsys):
    # What `lrd train` could not set before: norm, mlp_ratio, scan_mode, mixer options, weight decay.
    argv = [
        "train",
        "--model",
        "lru",
        "--setting",
        "block",
        "--model.norm",
        "rmsnorm",
        "--model.mlp_ratio",
        "2",
    ]
    argv += ["--model.scan_mode", "sequential", "--model.options.lru.r_min", "0.5", "--optim.name", "adamw"]
    argv += ["--optim.weight_decay", "0.01", "--lag", "6", "--steps", "2", "--hidden-size", "4", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["steps_run"] == 2


def test_train_with_a_workdir_is_a_resumable_run(tmp_path, capsys):
    argv = ["train", "--lag", "6", "--steps", "4", "--eval-every", "2", "--hidden-size", "4"]
    argv += ["--batch-size", "2", "--workdir", str(tmp_path / "w")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps_run"] == 4
    assert main(argv) == 0  # again: the finished run is returned, not retrained
    assert f"results in {tmp_path / 'w'}" in capsys.readouterr().out


def test_list_shows_the_options_of_every_mixer(capsys):
    from lrd.registry import mixer_defaults, mixer_names

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "options: truncation=None, unroll=1, remat=False, forget_bias=1.0" in out  # lstm
    # the linear-scan layers; the time-invariant ones add fft; mlstm has its own forms
    assert (
        "scan_mode: auto (default; sequential on this backend) | sequential | associative | chunked | kernel\n"
        in out
    )
    assert (
        "scan_mode: auto (default; fft on this backend) | sequential | associative | chunked | kernel | fft"
        in out
    )
    assert "scan_mode: auto (default; chunked on this backend) | sequential | parallel | chunked" in out
    assert "chunk_size=None [scan_mode chunked]" in out
    assert "truncation=None [scan_mode sequential|associative]" in out  # linear attention
    blocks, current = {}, None
    for line in out.splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # "  NAME  family  description"
            current = line.split()[0]
            blocks[current] = ""
        elif current is not None:
            blocks[current] += line
    assert "every model: dtype=float32 | bfloat16 | float16" in out  # the precision fields, stated once
    for name in mixer_names():
        block = blocks[name]
        for option in mixer_defaults(name):
            if option not in ("dtype", "param_dtype"):
                assert option in block, f"{name}: option {option} not listed"


# ----------------------------------------------------------------------------------------------------------------
# Bad input, every command: exit 2, one line naming the field, no traceback, the workdir untouched.

BAD_INPUT = [
    ("train", ["--model", "lstmm"], "model.name='lstmm' is unknown"),
    ("train", ["--task", "adder"], "task.name='adder' is unknown"),
    ("train", ["--lag", "-3"], "task.lag must be a positive int"),
    ("train", ["--lag", "0"], "task.lag must be a positive int"),
    ("train", ["--steps", "0"], "run.steps must be a positive int"),
    ("train", ["--batch-size", "0"], "optim.batch_size must be a positive int"),
    ("train", ["--learning-rate", "inf"], "optim.learning_rate must be a finite number > 0"),
    ("train", ["--learning-rate", "nan"], "optim.learning_rate must be a finite number > 0"),
    ("train", ["--learning-rate", "-1"], "optim.learning_rate must be a finite number > 0"),
    ("train", ["--clip-norm", "0"], "optim.clip_norm must be a finite number > 0"),
    ("train", ["--hidden-size", "0"], "model.hidden_size must be a positive int"),
    ("train", ["--hidden-size", "3.5"], "model.hidden_size must be an int"),
    ("train", ["--hidden-size", "1000000000"], "model.hidden_size=1000000000: training needs at least"),
    ("train", ["--batch-size", "100000000", "--lag", "1000"], "optim.batch_size=100000000, task.lag=1000"),
    ("train", ["--num-layers", "0"], "model.num_layers must be a positive int"),
    ("train", ["--setting", "deep"], "model.setting='deep' is unknown; allowed values: bare, block"),
    ("train", ["--truncation", "0"], "model.truncation must be a positive int"),
    ("train", ["--truncation", "500", "--lag", "20"], "model.truncation=500 exceeds the sequence length 20"),
    ("train", ["--num-seeds", "0"], "run.num_seeds must be a positive int"),
    ("train", ["--seed", "-1"], "run.seed must be an int >= 0"),
    ("train", ["--eval-every", "0"], "run.eval_every must be a positive int"),
    ("train", ["--task-option", "nonsense"], "--task-option must look like KEY=VALUE"),
    ("train", ["--task-option", "colour=3"], "has no option(s) ['colour']"),
    ("train", ["--model.norm", "batchnorm"], "model.norm='batchnorm' is unknown"),
    ("train", ["--model.options.lstm.nonsense", "1"], "model.options.lstm key='nonsense' is unknown"),
    ("train", ["--optim.name", "sgd"], "optim.name='sgd' is unknown; allowed values: adam, adamw, rmsprop"),
    ("train", ["--optim.weight_decay", "0.1"], "optim.weight_decay=0.1 needs optim.name='adamw'"),
    ("train", ["--run.max_skip_fraction", "1.5"], "run.max_skip_fraction must be in (0, 1]"),
    ("train", ["--run.early_stop", "maybe"], "run.early_stop must be true or false"),
    ("train", ["--modle.hidden_size", "3"], "must start with a section"),
    ("train", ["--hidden_size", "4"], "unrecognised argument '--hidden_size'"),
    ("train", ["--lag", "5", "--task.lag", "6"], "task.lag is given twice"),
    ("train", ["--model", "attention", "--truncation", "4"], "cannot be applied to mixer 'attention'"),
    ("train", ["--model", "mlstm", "--truncation", "3"], "only scan_mode 'sequential' honours truncation"),
    ("train", ["--model", "lru", "--model.options.lru.chunk_size", "8"], "only scan_mode 'chunked' honours"),
    ("train", ["--model", "attention", "--hidden-size", "6"], "num_heads=4: must divide hidden_size=6"),
    ("train", ["--model", "lru", "--model.scan_mode", "fast"], "model.scan_mode='fast': unknown value"),
    ("train", ["--config", "nope"], "config file 'nope' does not exist"),
    ("train", ["--config", "adding:colour=red"], "config argument 'colour' is unknown"),
    ("run", [], "run.workdir is required"),
    (
        "run",
        ["--workdir", "{finished}", "--hidden-size", "1000000000"],
        "model.hidden_size=1000000000: training",
    ),
    ("bench", ["--models", "lstm", "--d-model", "1000000000"], "model.hidden_size=1000000000: training"),
    ("grad-flow", ["--hidden-size", "1000000000"], "model.hidden_size=1000000000: training"),
    ("run", ["--workdir", "{finished}", "--batch-size", "4"], "holds a finished run with a different config"),
    ("lag-search", ["--search.sweep", "50,20"], "search.sweep must be strictly increasing"),
    ("lag-search", ["--ray-address", "auto"], "--ray-address needs --executor ray"),
    ("lag-search", ["--coordinator", "h:1"], "--coordinator, --num-processes and --process-id must be given"),
    (
        "run",
        ["--workdir", "{finished}", "--num-processes", "2", "--process-id", "2"],
        "--process-id must be in 0..1",
    ),
    (
        "lag-search",
        ["--run.mesh", "members=3"],
        "run.mesh='members=3': members=3 does not divide the 1 members",
    ),
    (
        "lag-search",
        ["--run.mesh", "members=1,batch=64"],
        "run.mesh='members=1,batch=64' needs 64 devices; 1 are",
    ),
    ("lag-search", ["--optim.learning_rate", "1e-3,1e-3"], "optim.learning_rate lists a rate twice"),
    ("lag-search", ["--search.solve_fraction", "0"], "search.solve_fraction must be in (0, 1]"),
    (
        "lag-search",
        ["--truncation", "15", "--search.sweep", "10,20"],
        "search.sweep lag 10: model.truncation=15",
    ),
    ("bench", ["--models", "nosuch"], "bench.models='nosuch' is unknown"),
    ("bench", ["--seq-len", "0"], "bench.seq_lens entries must be a positive int"),
    ("bench", ["--out", "table.txt"], "--out must end in .json or .csv"),
    ("bench", ["--out", "/nonexistent/dir/x.json"], "does not exist"),
    ("bench", ["--peer", "nope"], "bench.peer='nope' is unknown"),
    ("bench", ["--repeats", "0"], "bench.repeats must be a positive int"),
    ("grad-flow", ["--window", "10,5"], "diagnostics.window must have lo < hi"),
    ("grad-flow", ["--leaves", "layer0_lstm/z"], "diagnostics.leaves ['layer0_lstm/z'] unknown"),
    ("grad-flow", ["--sweep", "bad"], "--sweep must look like section.field=V1,V2"),
    ("grad-flow", ["--from-workdir", "/nonexistent/run"], "holds no config.json"),
    ("grad-flow", ["--from-workdir", "{finished}", "--model", "gru"], "the model section and task.name"),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    argv = [
        "train",
        "--lag",
        "6",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--hidden-size",
        "4",
        "--batch-size",
        "2",
    ]
    assert main([*argv, "--workdir", str(workdir)]) == 0
    return workdir


def _tree_hash(directory) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_bad_input_table_is_large():
    assert len(BAD_INPUT) >= 40
    assert {command for command, _, _ in BAD_INPUT} == {"train", "run", "lag-search", "bench", "grad-flow"}


@pytest.mark.parametrize("command,argv,expected", BAD_INPUT, ids=[" ".join([c, *a]) for c, a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(
    command, argv, expected, finished_run, capsys, tmp_path
):
    before = _tree_hash(finished_run)
    argv = [a.replace("{finished}", str(finished_run)) for a in argv]
    if command == "lag-search" and "--workdir" not in argv:
        argv += ["--workdir", str(tmp_path / "search")]
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lrd {command}: error: ") and "\n" not in err, err
    assert expected in err
    assert _tree_hash(finished_run) == before
    assert not (tmp_path / "search").exists()


@pytest.mark.parametrize("command", ["train", "run", "lag-search", "bench", "grad-flow"])
def test_help_lists_every_field_with_its_default_in_plain_text(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "every field can be set with --section.field VALUE" in out
    for fragment in ("hidden_size=", "learning_rate=", "checkpoint_every=", "sweep=", "jacobian_samples="):
        assert fragment in out, fragment
    assert "(default: " in out and "``" not in out


def test_top_level_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "`" not in capsys.readouterr().out
