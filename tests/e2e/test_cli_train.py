"""End to end: `compatlm train task|compat` and `compatlm cache-teacher` through cli.main."""

from __future__ import annotations

import json

import pytest

from compatlm.cli import main


@pytest.fixture(scope="module")
def configs(tiny_family, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_train")
    data = root / "mc.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "context": f"Question: what color is item {i}? Answer:",
            "choices": ["blue", "red"],
            "label": i % 2,
        }
        for i in range(6)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (
        f"task: {{name: colors, path: {data}}}\n"
        "optim: {epochs: 1, batch_size: 3, lr: 0.05}\n"
        "runtime: {device: cpu, progress: false}\n"
    )
    task = root / "task.yaml"
    task.write_text(f"base: {tiny_family['new']}\nlora: {{r: 2, alpha: 4}}\n" + common)
    compat = root / "compat.yaml"
    compat.write_text(
        f"old: {tiny_family['old']}+{tiny_family['old_adapter']}\n"
        f"new: {tiny_family['new']}+{tiny_family['new_adapter']}\n" + common
    )
    return {"task": str(task), "compat": str(compat)}


def test_train_task(configs, tmp_path, capsys):
    out = tmp_path / "task"
    # Overrides may follow options.
    assert main(["train", "task", configs["task"], "--out", str(out), "optim.epochs=2"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "adapter") in printed and str(out / "config.yaml") in printed
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 2
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_train_compat_with_cache_and_cache_teacher(configs, tmp_path, capsys):
    out = tmp_path / "compat"
    code = main(
        ["train", "compat", configs["compat"], "--out", str(out), "teacher_old=cache", "topk=8"]
    )
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "teacher_cache") in printed and str(out / "adapter") in printed
    index = json.loads((out / "teacher_cache" / "index.json").read_text())
    assert (index["k"], index["temperature"], index["n_examples"]) == (8, 2.0, 6)

    cache = tmp_path / "cache"
    assert main(["cache-teacher", configs["compat"], "--out", str(cache), "topk=8"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(cache)
    out2 = tmp_path / "compat2"
    args = [
        "train",
        "compat",
        configs["compat"],
        "--out",
        str(out2),
        "teacher_old=cache",
        "topk=8",
        f"cache_dir={cache}",
    ]
    assert main(args) == 0
    assert not (out2 / "teacher_cache").exists()  # the given cache was used
    # A cache built for another k is refused with a one-line error.
    args[-2] = "topk=4"
    args[4] = str(tmp_path / "compat3")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after library progress bars
    assert err.startswith("error: teacher cache") and "built with k 8, this run needs 4" in err


def test_config_errors_are_one_line(configs, tmp_path, capsys):
    assert main(["train", "task", configs["task"], "--out", str(tmp_path), "optim.lrate=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "'optim.lrate'" in err[0]


@pytest.mark.parametrize(
    "argv", [["train", "task"], ["train", "compat"], ["cache-teacher"], ["train"]]
)
def test_help_shows_runnable_examples(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "examples:\n  compatlm " in capsys.readouterr().out
