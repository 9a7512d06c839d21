"""experiments/seed_spread.py: one recipe's seeds side by side, refused when the files differ in more than the seed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def _seed_spread():
    spec = importlib.util.spec_from_file_location("seed_spread", REPO_ROOT / "experiments" / "seed_spread.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(folder, name, seed, cells, lr=1e-4):
    recipe = {"student": "s", "learning_rate": lr, "num_train_epochs": 5, "seed": seed}
    results = {task: {"ft_cot": {"accuracy": last, "best_epoch_accuracy": best, "recipe": recipe}}
               for task, (last, best) in cells.items()}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps({"results": results}))


def test_seed_spread_table(tmp_path, capsys):
    module = _seed_spread()
    _write(tmp_path, "a", 42, {"coin_flip": (0.9, 0.95), "date_understanding": (0.20, 0.24)})
    _write(tmp_path, "b", 1, {"date_understanding": (0.30, 0.32)})
    assert module.main(["--name", "spread", "a", "b", "--results_dir", str(tmp_path)]) == 0
    table = (tmp_path / "spread.md").read_text()
    # Date: mean 25.00 of 20 and 30 (sd 7.07), below the paper's 25.23; best epochs' mean 28.00.
    assert "| Date | 25.23 | 30.00 | 20.00 | 25.00 ± 7.07 | 28.00 | 2 | no |" in table
    assert "| CoinFlip | 77.33 | - | 90.00 | 90.00 | 95.00 | 1 | yes |" in table  # one seed: no spread shown
    assert table.index("| Date") < table.index("| CoinFlip")  # the paper's task order, not the file's

    _write(tmp_path, "c", 2, {"date_understanding": (0.1, 0.1)}, lr=3e-4)
    assert module.main(["--name", "spread", "a", "c", "--results_dir", str(tmp_path)]) == 2
    assert "differ in more than the seed (learning_rate)" in capsys.readouterr().err
    _write(tmp_path, "d", 42, {"date_understanding": (0.1, 0.1)})
    assert module.main(["--name", "spread", "a", "d", "--results_dir", str(tmp_path)]) == 2
    assert "seed 42 appears twice (in a and d)" in capsys.readouterr().err
    assert module.main(["--name", "spread", "a", "missing", "--results_dir", str(tmp_path)]) == 2
    assert "no results file" in capsys.readouterr().err


def test_seed_spread_command_line(tmp_path):
    """The README's command, typed as a user types it (its own process, run from the repository root)."""
    _write(tmp_path, "a", 42, {"strategy_qa": (0.4847, 0.5313)})
    _write(tmp_path, "b", 1, {"strategy_qa": (0.5255, 0.5255)})
    cmd = [sys.executable, "experiments/seed_spread.py", "--name", "spread", "a", "b", "--results_dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "spread.md").read_text()
    assert "| StrategyQA | 55.75 | 52.55 | 48.47 | 50.51 ± 2.88 | 52.84 | 2 | no |" in table
    bad = subprocess.run(cmd[:5] + ["nope", "--results_dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
