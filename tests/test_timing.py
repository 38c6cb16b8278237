"""GPU time estimates: scaled from the one H100 measurement, labelled as estimates, inputs checked."""

import pytest

from camlib import timing


def test_scaling_follows_the_measured_h100_rate():
    # one ResNet50-CAM epoch of CUB (5,994 images) on an H100 is 5,994 / 3,200 s
    assert timing.train_seconds("resnet50_cam", 5994, "H100") == pytest.approx(5994 / 3200)
    t4, a100 = timing.train_seconds("resnet50_cam", 5994, "T4"), timing.train_seconds("resnet50_cam", 5994, "A100")
    assert t4 > a100 > timing.train_seconds("resnet50_cam", 5994, "H100")
    assert t4 / a100 == pytest.approx(timing.GPU_SPEED["A100"] / timing.GPU_SPEED["T4"])


def test_small_networks_are_bound_by_steps_not_flops():
    assert timing.train_seconds("small_cnn_64", 128 * 240, "H100", steps=240) == pytest.approx(240 * timing.MIN_STEP_SECONDS)


def test_description_says_estimate():
    text = timing.describe(timing.estimate("googlenet_gap", 20 * 5994, decode=11788))
    assert "estimate" in text and "Colab T4" in text and "A100" in text


@pytest.mark.parametrize("args", [("resnet50_cam", 10, "V100"), ("nope", 10, "T4"), ("resnet50_cam", -1, "T4")])
def test_bad_input_is_refused(args):
    with pytest.raises(ValueError, match="must be"):
        timing.train_seconds(*args)


def test_one_table_of_rates_for_recipes_and_estimates():
    from camlib import recipes

    assert recipes.H100_IMAGES_PER_S is timing.H100_IMAGES_PER_S
    assert timing.train_seconds("googlenet_gap", 5600, "H100") == pytest.approx(1.0)
