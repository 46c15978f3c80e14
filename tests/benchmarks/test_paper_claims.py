"""benchmarks/paper_claims.py --quick: each claim runs end to end in seconds and writes a sane JSON and PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import paper_claims  # benchmarks/ is on sys.path (conftest.py)
import pytest


def _run(claim: str, tmp_path: Path, *extra: str) -> dict:
    paper_claims.main([claim, "--quick", "--out", str(tmp_path), *extra])
    assert (tmp_path / f"{claim}.png").stat().st_size > 1000
    return json.loads((tmp_path / f"{claim}.json").read_text())


def _errors_in_range(history: list[dict]) -> None:
    assert history
    for rec in history:
        for key in ("train_error", "val_top1_error", "val_top5_error", "probe_top1_error"):
            if key in rec:
                assert 0.0 <= rec[key] <= 100.0, (key, rec[key])
        assert rec["epochs"] > 0 and math.isfinite(rec["train_loss"])
    assert [r["steps"] for r in history] == sorted(r["steps"] for r in history)


def test_relu_tanh_quick(tmp_path, cifar10_archive):
    result = _run("relu-tanh", tmp_path, "--cifar-archive", str(cifar10_archive), "--cache", str(tmp_path / "cache"))
    assert result["data"]["train"] == 200  # 20 per class, extracted from the archive into the cache
    assert set(result["runs"]) == {"relu", "tanh"}
    for variant in ("relu", "tanh"):
        sweep = result["sweep"][variant]
        tried = sorted([*sweep["grid"], *sweep["extended"]])
        assert sweep["grid"] == [0.01, 0.05] and len(sweep["extended"]) <= 2 and sweep["chosen_lr"] in tried
        assert sweep["bracketed"] == (sweep["chosen_lr"] not in (tried[0], tried[-1]))
        errors = sweep["train_error_after_sweep"]
        assert errors[f"{sweep['chosen_lr']:g}"] == min(errors.values())
        run = result["runs"][variant][0]
        assert run["model"] == ("convnet4" if variant == "relu" else "convnet4_tanh")
        assert run["dropout"] == 0.0 and run["weight_decay"] == 0.0 and run["augment"] == "none"
        _errors_in_range(run["history"])
    levels = result["per_seed"][0]["levels"]
    assert [row["level"] for row in levels] == result["levels"] and result["target_error"] == 25.0
    for row in levels:  # a ratio where both crossed, a lower bound where only ReLU did
        if row["a_steps"] and row["b_steps"]:
            assert row["ratio"] == pytest.approx(row["b_steps"] / row["a_steps"])
    assert "ratio_at_target" in result and result["wall_seconds"] > 0
    for row in levels:  # seconds beside steps, from the same record
        assert (row["a_seconds"] is None) == (row["a_steps"] is None)
    for variant in ("relu", "tanh"):
        assert set(result[f"{variant}_seconds_to_target"]) >= {"n"}
    assert result["machine_start"]["versions"]["torch"]


def test_dropout_quick(tmp_path, tiny20):
    result = _run("dropout", tmp_path, "--data", str(tiny20))
    assert set(result["runs"]) == {"no dropout", "dropout 0.5"}
    assert [r["dropout"] for r in (result["runs"]["no dropout"][0], result["runs"]["dropout 0.5"][0])] == [0.0, 0.5]
    for runs in result["runs"].values():
        _errors_in_range(runs[0]["history"])
        last = runs[0]["last"]
        assert last["gap_top1"] == pytest.approx(last["val_top1_error"] - last["probe_top1_error"])
    assert "ratio_at_lowest_common_level" in result
    assert result["target_error"] == 10.0 and result["target_error"] in result["levels"]
    converged = result["per_seed"][0]["converged"]
    assert converged["level"] == 10.0 and set(result["steps_to_converge"]) == {"no dropout", "dropout 0.5"}
    for name, side in (("no dropout", "a"), ("dropout 0.5", "b")):  # a run stops where it converged
        history = result["runs"][name][0]["history"]
        crossed = [r for r in history if r["train_error"] <= 10.0]
        assert crossed == ([history[-1]] if converged[f"{side}_steps"] else [])


def test_dropout_stops_each_run_at_the_stated_convergence(tmp_path, tiny20):
    # A 100% "convergence" level is met at once: both runs stop after their first chunk and the ratio is 1 step/step.
    result = _run("dropout", tmp_path, "--data", str(tiny20), "--target", "100", "--epochs", "3")
    for runs in result["runs"].values():
        assert len(runs[0]["history"]) == 1
    assert result["ratio_to_converge"]["n"] == 1 and result["ratio_to_converge"]["mean"] == pytest.approx(1.0)
    assert set(result["final"]["no dropout"]) >= {"val_top1_error", "gap_top1"}


def test_pooling_quick(tmp_path, tiny20):
    result = _run("pooling", tmp_path, "--data", str(tiny20), "--seeds", "0,1")
    runs = result["runs"]
    assert [r["model"] for r in runs["overlapping 3x3/2"]] == ["alexnet_paper"] * 2
    assert [r["model"] for r in runs["non-overlapping 2x2/2"]] == ["alexnet_paper_pool2"] * 2
    assert runs["overlapping 3x3/2"][0]["params"] == runs["non-overlapping 2x2/2"][0]["params"]
    diffs = result["paired_differences_pool2_minus_pool3"]
    for key in ("top1", "top5", "gap_top1"):
        assert diffs[key]["n"] == 2 and len(diffs[key]["values"]) == 2
        assert -100.0 <= diffs[key]["mean"] <= 100.0 and diffs[key]["sd"] >= 0.0
    a, b = runs["overlapping 3x3/2"][0], runs["non-overlapping 2x2/2"][0]
    assert diffs["top1"]["values"][0] == pytest.approx(b["last"]["val_top1_error"] - a["last"]["val_top1_error"])
    assert a["last"]["steps"] == b["last"]["steps"]  # the same budget


@pytest.mark.parametrize("claim", ["relu-tanh", "dropout", "pooling"])
def test_the_plain_command_is_the_documented_recipe(claim, monkeypatch, tmp_path):
    # `paper_claims.py <claim>` alone must run what docs/BENCHMARKS.md reports; an option overrides its part.
    seen = {}

    def fake_run(opts, report=None):
        seen["opts"] = opts
        raise SystemExit(0)

    monkeypatch.setitem(
        paper_claims.__dict__,
        {"relu-tanh": "run_relu_tanh", "dropout": "run_dropout", "pooling": "run_pooling"}[claim],
        fake_run,
    )
    monkeypatch.setattr(paper_claims, "extract_cifar10", lambda *a, **k: tmp_path)
    with pytest.raises(SystemExit):
        paper_claims.main([claim, "--seeds", "4", "--out", str(tmp_path)])
    opts = seen["opts"]
    for key, value in paper_claims.RECIPES[claim].items():
        assert getattr(opts, key) == (value if key != "seeds" else (4,)), key
    doc = (Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md").read_text()
    for key, value in paper_claims.RECIPES[claim].items():  # the documented command names every recipe value
        if key in ("lrs", "seeds"):
            value = ",".join(f"{v:g}" for v in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        assert f"--{key.replace('_', '-')} {value}" in doc, (claim, key)
