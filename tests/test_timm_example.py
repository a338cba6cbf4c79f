"""The timm example end to end, in a smoke run: train in PyTorch, port, fine-tune in JAX, back to timm."""

import pytest

from prcm_examples import timm_resnet


@pytest.mark.parametrize("model", ["resnet18", "mobilenetv3_small_100"])
def test_timm_example_runs_end_to_end(model, tmp_path, capsys):
    args = ["--model", model, "--epochs", "1", "--finetune-epochs", "1", "--image", "16", "--train-images", "128",
            "--out", str(tmp_path)]  # fmt: skip
    assert timm_resnet.main(args) == 0
    out = capsys.readouterr().out
    for text in ("ported logits vs float64 timm, jax float32", "same predictions", "exported to timm (strict load)", model):
        assert text in out
    assert "(100.00%)" in out  # the port changes no prediction
    assert (tmp_path / f"{model}_affineprcm.safetensors").exists() and (tmp_path / f"{model}_affineprcm_jax.safetensors").exists()


@pytest.mark.parametrize(("args", "expected"), [(["--epochs", "0"], "expected an integer >= 1, got 0"),
                                                (["--image", "4"], "expected an integer >= 8, got 4"),
                                                (["--model", "vit_tiny"], "invalid choice: 'vit_tiny'")])  # fmt: skip
def test_timm_example_rejects_bad_arguments(args, expected, capsys):
    with pytest.raises(SystemExit) as done:
        timm_resnet.main(args)
    assert done.value.code == 2 and expected in capsys.readouterr().err
