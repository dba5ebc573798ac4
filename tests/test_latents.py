"""Seeds, truncation and interpolation: ``gankit sample --seeds/--truncation/--latent`` and
``gankit interpolate``, on a finished run and on both backends holding the same weights."""

from __future__ import annotations

import shutil
from importlib.util import find_spec

import numpy as np
import pytest
import tomli_w

from conftest import cli, one_line, recipe_dict, runs_made_on_first_use
from gankit.latents import parse_seeds, slerp, truncate, walk
from gankit.noise import sample_noise, seed_noise


def test_seeds_and_ranges_are_read_in_the_order_written():
    assert parse_seeds("0-3,100,7") == [0, 1, 2, 3, 100, 7]
    assert parse_seeds(" 5 ") == [5]


@pytest.mark.parametrize(("text", "says"), [
    ("9-3", "the range 9-3 runs backwards; write 3-9"),
    ("1,x", "'x' is not a seed or a range"),
    ("1,,2", "an empty item"),
    ("4294967296", "seeds run from 0 to 4294967295"),
    ("0-200000", "more than 100,000 seeds"),
])
def test_a_bad_seed_list_is_one_line(text, says):
    with pytest.raises(ValueError, match=says):
        parse_seeds(text)


def test_a_seeds_noise_does_not_depend_on_the_other_seeds():
    np.testing.assert_array_equal(seed_noise([7], 16)[0], seed_noise([1, 7, 3], 16)[1])
    assert seed_noise([0, 1], 16).dtype == np.float32
    assert not np.array_equal(seed_noise([0], 16), seed_noise([1], 16))


def test_truncation_one_is_the_identity_and_smaller_psi_shrinks_the_noise():
    noise = seed_noise(range(50), 8)
    assert truncate(noise, 1.0) is noise
    np.testing.assert_allclose(truncate(noise, 0.5), noise * 0.5)
    for psi in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="psi is a number above 0 and at most 1"):
            truncate(noise, psi)


def test_slerp_ends_at_its_end_points_and_keeps_the_norm():
    start, end = seed_noise([1, 2], 64)
    path = slerp(start, end, np.linspace(0, 1, 9))
    np.testing.assert_allclose(path[0], start, atol=1e-5)
    np.testing.assert_allclose(path[-1], end, atol=1e-5)
    norms = np.linalg.norm(path, axis=1)
    np.testing.assert_allclose(norms, np.linspace(norms[0], norms[-1], 9), rtol=1e-5)
    middle = (start + end) / 2  # the straight line's midpoint is much shorter
    assert np.linalg.norm(middle) < 0.8 * norms[4]


def test_a_walk_visits_every_keyframe_in_order():
    keys = seed_noise([3, 4, 5], 8)
    for spherical in (True, False):
        path = walk(keys, 9, spherical=spherical)
        assert path.shape == (9, 8)
        for frame, index in ((0, 0), (4, 1), (8, 2)):
            np.testing.assert_allclose(path[frame], keys[index], atol=1e-5)
    with pytest.raises(ValueError, match="at least two keyframes"):
        walk(keys[:1], 5)


def _drawn(result, path):
    assert result.exit_code == 0, result.output
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def test_a_seed_draws_the_same_image_on_every_call_whatever_else_is_drawn(finished_run, tmp_path):
    first = _drawn(cli("sample", finished_run, "--seeds", "3,5", "-o", tmp_path / "a.npz"), tmp_path / "a.npz")
    again = _drawn(cli("sample", finished_run, "--seeds", "3,5", "-o", tmp_path / "b.npz"), tmp_path / "b.npz")
    alone = _drawn(cli("sample", finished_run, "--seeds", "5", "-o", tmp_path / "c.npz"), tmp_path / "c.npz")
    np.testing.assert_array_equal(first["images"], again["images"])
    np.testing.assert_array_equal(first["images"][1], alone["images"][0])
    assert not np.array_equal(first["images"][0], first["images"][1])
    assert list(first["seeds"]) == [3, 5] and float(first["truncation"]) == 1.0


def test_a_latent_file_draws_its_images_again(finished_run, tmp_path):
    drawn = _drawn(cli("sample", finished_run, "--seeds", "0-3", "--truncation", "0.7", "-o", tmp_path / "a.npz"),
                   tmp_path / "a.npz")
    assert float(drawn["truncation"]) == pytest.approx(0.7)
    np.testing.assert_allclose(drawn["latents"], seed_noise(range(4), drawn["latents"].shape[1]) * 0.7, rtol=1e-6)
    again = _drawn(cli("sample", finished_run, "--latent", tmp_path / "a.npz", "-o", tmp_path / "b.npz"),
                   tmp_path / "b.npz")
    np.testing.assert_array_equal(drawn["images"], again["images"])


def test_truncation_lowers_the_spread_of_the_samples(finished_run, tmp_path):
    spreads = []
    for psi in ("1", "0.5", "0.1"):
        out = tmp_path / f"{psi}.npz"
        spreads.append(_drawn(cli("sample", finished_run, "-n", "64", "--truncation", psi, "-o", out), out)
                       ["images"].astype(float).std(axis=0).mean())
    assert spreads[0] > spreads[1] > spreads[2]


def test_truncation_one_draws_what_plain_sampling_draws(finished_run, tmp_path):
    plain = _drawn(cli("sample", finished_run, "-n", "8", "--seed", "4", "-o", tmp_path / "a.npz"), tmp_path / "a.npz")
    same = _drawn(cli("sample", finished_run, "-n", "8", "--seed", "4", "--truncation", "1", "-o", tmp_path / "b.npz"),
                  tmp_path / "b.npz")
    np.testing.assert_array_equal(plain["images"], same["images"])


@pytest.mark.parametrize(("options", "says"), [
    (["--seeds", "9-3"], "--seeds 9-3: the range 9-3 runs backwards; write 3-9"),
    (["--truncation", "0"], "--truncation 0.0: psi is a number above 0 and at most 1"),
    (["--truncation", "1.2"], "--truncation 1.2: psi is a number above 0 and at most 1"),
    (["-n", "4", "--seeds", "1"], "-n, --seeds and --latent each say which noise to draw; give one of them"),
    (["--latent", "nowhere.npz"], "--latent nowhere.npz: no such file"),
])
def test_bad_sampling_options_are_one_line(finished_run, tmp_path, options, says):
    result = cli("sample", finished_run, *options, "-o", tmp_path / "x.png")
    assert result.exit_code != 0
    assert says in one_line(result.output)
    assert not (tmp_path / "x.png").exists()


def test_a_latent_file_of_another_size_is_refused(finished_run, tmp_path):
    np.savez(tmp_path / "wrong.npz", latents=np.zeros((2, 3), np.float32))
    result = cli("sample", finished_run, "--latent", tmp_path / "wrong.npz", "-o", tmp_path / "x.png")
    assert result.exit_code != 0
    assert "its latents are (2, 3), and this run's generator takes (N, " in one_line(result.output)
    np.savez(tmp_path / "none.npz", images=np.zeros((2, 3), np.uint8))
    result = cli("sample", finished_run, "--latent", tmp_path / "none.npz", "-o", tmp_path / "x.png")
    assert "it holds no 'latents' array (it has images)" in one_line(result.output)


def test_an_interpolation_begins_and_ends_at_its_seeds_images(finished_run, tmp_path):
    import imageio.v3 as iio

    ends = _drawn(cli("sample", finished_run, "--seeds", "2,9", "-o", tmp_path / "ends.npz"), tmp_path / "ends.npz")
    result = cli("interpolate", finished_run, "--seeds", "2,9", "--frames", "12", "--scale", "3",
                 "-o", tmp_path / "walk.gif")
    assert result.exit_code == 0, result.output
    assert "wrote 12 frames of 1 walk" in result.output
    frames = iio.imread(tmp_path / "walk.gif", index=None)
    assert len(frames) == 12 and frames.shape[1:3] == (28 * 3, 28 * 3)
    first, last = (frames[index][::3, ::3].reshape(28, 28, -1)[..., :1] for index in (0, -1))
    np.testing.assert_allclose(first.astype(int), ends["images"][0].astype(int), atol=1)
    np.testing.assert_allclose(last.astype(int), ends["images"][1].astype(int), atol=1)
    assert not np.array_equal(frames[5], frames[0])


def test_a_grid_of_walks_shares_out_the_seeds(finished_run, tmp_path):
    import imageio.v3 as iio

    result = cli("interpolate", finished_run, "--seeds", "0-5", "--grid", "3x1", "--frames", "4", "--scale", "1",
                 "--linear", "-o", tmp_path / "walks.gif")
    assert result.exit_code == 0, result.output
    frames = iio.imread(tmp_path / "walks.gif", index=None)
    assert frames.shape[:3] == (4, 28 + 4, 3 * 28 + 8)  # one row of three walks, 2-pixel borders
    refused = cli("interpolate", finished_run, "--seeds", "0-4", "--grid", "3x1", "-o", tmp_path / "x.gif")
    assert "need a multiple of 3 seeds, at least 6; got 5" in one_line(refused.output)
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.skipif(find_spec("imageio_ffmpeg") is None, reason="needs imageio-ffmpeg (gankit[video])")
def test_an_interpolation_can_be_an_mp4(finished_run, tmp_path):
    import imageio.v3 as iio

    result = cli("interpolate", finished_run, "--frames", "10", "-o", tmp_path / "walk.mp4")
    assert result.exit_code == 0, result.output
    frames = iio.imread(tmp_path / "walk.mp4", plugin="FFMPEG", index=None)
    assert len(frames) == 10 and frames.shape[1] % 16 == 0 and frames.shape[2] % 16 == 0


def test_a_run_without_a_checkpoint_is_one_line(tiny_mnist, tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, train={"steps": 2, "checkpoint_every": 0}, export=[])))
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    run_dir = tmp_path / "runs" / "00000-tiny"
    for path in sorted((run_dir / "checkpoints").iterdir()):
        shutil.rmtree(path)
    result = cli("interpolate", run_dir, "-o", tmp_path / "walk.gif")
    assert result.exit_code != 0 and "checkpoint" in one_line(result.output)
    assert not (tmp_path / "walk.gif").exists()


@pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None, reason="needs torch and tensorflow")
def test_a_seed_draws_the_same_image_on_both_backends(write_recipe):
    from test_backend_agreement import TINY_DCGAN, Pair

    both = Pair(write_recipe(architecture={**TINY_DCGAN, "conditional": True, "g_condition": "batchnorm",
                                           "d_condition": "projection"}, train={"steps": 2, "batch_size": 32}))
    noise = truncate(seed_noise([0, 3, 42], both.torch.latent_dim), 0.8)
    labels = np.array([1, 7, 7])
    on_torch = both.torch.generate_from_noise(noise, labels=labels)
    on_tensorflow = both.tensorflow.generate_from_noise(noise, labels=labels)
    assert on_torch.shape == (3, 28, 28, 1)
    assert np.abs(on_torch.astype(int) - on_tensorflow).max() <= 2
    np.testing.assert_array_equal(both.torch.generate(5, 1),
                                  both.torch.generate_from_noise(sample_noise(1, 5, both.torch.latent_dim)))


@pytest.fixture(scope="module")
def conditional_runs(tiny_mnist, tmp_path_factory):
    """A tiny conditional MLP run per backend (made on first use)."""
    return runs_made_on_first_use(
        tiny_mnist, tmp_path_factory, "conditional", train={"steps": 4, "checkpoint_every": 0}, export=[],
        architecture={"use": "mlp", "g_hidden": [32], "d_hidden": [32], "conditional": True})


@pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
    for name in ("torch", "tensorflow")])
def test_a_walk_between_classes_begins_and_ends_at_the_classes_images(conditional_runs, backend, tmp_path):
    import imageio.v3 as iio

    run_dir = conditional_runs(backend)
    ends = [_drawn(cli("sample", run_dir, "--seeds", "5", "--class", name, "-o", tmp_path / f"{name}.npz"),
                   tmp_path / f"{name}.npz")["images"][0] for name in ("3", "8")]
    result = cli("interpolate", run_dir, "--classes", "3,8", "--seeds", "5", "--frames", "9", "--scale", "1",
                 "-o", tmp_path / "walk.gif")
    assert result.exit_code == 0, result.output
    frames = iio.imread(tmp_path / "walk.gif", index=None)
    assert len(frames) == 9
    first, last, middle = (frames[index].reshape(28, 28, -1)[..., :1].astype(int) for index in (0, -1, 4))
    np.testing.assert_allclose(first, ends[0], atol=1)
    np.testing.assert_allclose(last, ends[1], atol=1)
    assert np.abs(middle - ends[0]).mean() > 0.5 and np.abs(middle - ends[1]).mean() > 0.5


@pytest.mark.parametrize(("options", "says"), [
    (["--classes", "3"], "--classes 3: a walk between classes needs at least two"),
    (["--classes", "3,8", "--seeds", "1,2"], "a walk between classes holds one seed's latent, so 1 walk takes 1 seed; got 2"),
    (["--classes", "3,x"], "--classes: unknown class 'x'"),
    (["--classes", "3,8", "--class", "1"], "--class and --classes: give one"),
])
def test_bad_class_walks_are_one_line(conditional_runs, tmp_path, options, says):
    result = cli("interpolate", conditional_runs("torch"), *options, "-o", tmp_path / "walk.gif")
    assert result.exit_code != 0 and says in one_line(result.output)
    assert not (tmp_path / "walk.gif").exists()


def test_an_unconditional_run_has_no_classes_to_walk(finished_run, tmp_path):
    result = cli("interpolate", finished_run, "--classes", "3,8", "-o", tmp_path / "walk.gif")
    assert result.exit_code != 0 and "--classes: " in one_line(result.output)
    assert "is not a conditional run" in one_line(result.output)
