"""Malformed recipes and ``--set`` arguments: each one must end in exit code 2 with a single
line that says what is wrong, no traceback, and no run directory.

The cases are written out rather than generated at random, so that a failure names the
input that caused it; ``test_the_suite_holds_at_least_100_cases`` keeps the count honest
(the README quotes it).
"""

from __future__ import annotations

import copy

import pytest
import tomli_w
from click.testing import CliRunner

from conftest import recipe_dict
from gankit.cli import main

DCGAN = {"use": "dcgan", "g_start_channels": 8, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2},
                                                            {"kernel": 3, "stride": 2}]}

SYNTAX = {
    "unclosed_table": "[dataset\nuse = 'mnist'",
    "unclosed_string": "name = 'tiny",
    "duplicate_key": "name = 'a'\nname = 'b'",
    "missing_value": "name =",
    "bare_word_value": "seed = zero",
    "invalid_float": "seed = 1.2.3",
    "nul_byte": "name = 'a\0b'",
    "latin1_bytes": b"name = '\xe9\xff'",
    "binary_garbage": bytes(range(256)) * 4,
    "deep_array_nesting": "seed = " + "[" * 100_000,
    "deep_inline_table_nesting": "seed = " + "{a = " * 5_000,
    "table_redefined": "[train]\nsteps = 1\n[train]\nsteps = 2",
    "empty_key": "= 3",
    "array_of_tables_clash": "export = 1\n[[export]]\nuse = 'png'",
    "only_whitespace_and_comments": "# nothing here\n\n",
}

# (description, change): ``change`` edits a copy of the good recipe (a dict of tables).
STRUCTURE = {
    "unknown_top_level_key": lambda r: r.update(trian={"steps": 1}),
    "missing_dataset": lambda r: r.pop("dataset"),
    "missing_architecture": lambda r: r.pop("architecture"),
    "missing_backend": lambda r: r.pop("backend"),
    "dataset_is_a_number": lambda r: r.update(dataset=3),
    "dataset_is_a_list": lambda r: r.update(dataset=["mnist"]),
    "dataset_without_use": lambda r: r["dataset"].pop("use"),
    "dataset_use_unknown": lambda r: r["dataset"].update(use="imagenet-21k"),
    "dataset_use_is_a_number": lambda r: r["dataset"].update(use=7),
    "dataset_unknown_param": lambda r: r["dataset"].update(roots="/tmp"),
    "dataset_param_wrong_type": lambda r: r["dataset"].update(download="yes"),
    "architecture_use_unknown": lambda r: r["architecture"].update(use="stylegan9"),
    "architecture_unknown_param": lambda r: r["architecture"].update(g_hiden=[32]),
    "architecture_latent_dim_zero": lambda r: r["architecture"].update(latent_dim=0),
    "architecture_latent_dim_huge": lambda r: r["architecture"].update(latent_dim=10**9),
    "architecture_hidden_not_a_list": lambda r: r["architecture"].update(g_hidden=32),
    "architecture_hidden_empty": lambda r: r["architecture"].update(g_hidden=[]),
    "architecture_hidden_strings": lambda r: r["architecture"].update(d_hidden=["32"]),
    "architecture_init_unknown": lambda r: r["architecture"].update(init="uniform"),
    "architecture_init_negative_std": lambda r: r["architecture"].update(init="normal:-1"),
    "architecture_dropout_one": lambda r: r["architecture"].update(d_dropout=1.0),
    "architecture_slope_negative": lambda r: r["architecture"].update(slope=-0.2),
    "architecture_activation_unknown": lambda r: r["architecture"].update(g_activation="gelu"),
    "dcgan_kernel_zero": lambda r: r.update(architecture={**DCGAN, "g_layers": [{"filters": 8, "kernel": 0}, {"kernel": 3}]}),
    "dcgan_stride_nine": lambda r: r.update(architecture={**DCGAN, "g_layers": [{"filters": 8, "stride": 9}, {"kernel": 3}]}),
    "dcgan_layers_empty": lambda r: r.update(architecture={**DCGAN, "g_layers": []}),
    "dcgan_padding_unknown": lambda r: r.update(architecture={**DCGAN, "d_layers": [{"filters": 8, "padding": "full"}]}),
    "dcgan_last_layer_filters": lambda r: r.update(architecture={**DCGAN, "g_layers": [{"filters": 8, "stride": 2},
                                                                                      {"filters": 3, "stride": 2}]}),
    "dcgan_strides_do_not_divide": lambda r: r.update(architecture={**DCGAN, "g_layers": [{"filters": 8, "stride": 3},
                                                                                         {"kernel": 3}]}),
    "dcgan_start_channels_zero": lambda r: r.update(architecture={**DCGAN, "g_start_channels": 0}),
    "backend_use_unknown": lambda r: r["backend"].update(use="jax"),
    "backend_device_unknown": lambda r: r["backend"].update(device="tpu"),
    "backend_threads_negative": lambda r: r["backend"].update(threads=-1),
    "name_with_a_slash": lambda r: r.update(name="../escape"),
    "name_empty": lambda r: r.update(name=""),
    "name_a_number": lambda r: r.update(name=5),
    "name_with_spaces": lambda r: r.update(name="my run"),
    "name_too_long": lambda r: r.update(name="x" * 300),
    "seed_negative": lambda r: r.update(seed=-1),
    "seed_too_large": lambda r: r.update(seed=2**32),
    "seed_a_float": lambda r: r.update(seed=1.5),
    "seed_a_bool": lambda r: r.update(seed=True),
    "seed_a_string": lambda r: r.update(seed="0"),
    "train_not_a_table": lambda r: r.update(train="fast"),
    "train_without_length": lambda r: r.update(train={"batch_size": 8}),
    "train_unknown_key": lambda r: r["train"].update(batch_sise=8),
    "train_steps_zero": lambda r: r["train"].update(steps=0),
    "train_epochs_negative": lambda r: r["train"].update(epochs=-1),
    "train_steps_a_float": lambda r: r["train"].update(steps=2.5),
    "train_batch_size_zero": lambda r: r["train"].update(batch_size=0),
    "train_batch_size_huge": lambda r: r["train"].update(batch_size=10**9),
    "train_batch_size_a_string": lambda r: r["train"].update(batch_size="64"),
    "train_batch_size_larger_than_the_data": lambda r: r["train"].update(batch_size=4096),
    "train_lr_zero": lambda r: r["train"].update(lr_g=0),
    "train_lr_negative": lambda r: r["train"].update(lr_d=-1e-4),
    "train_lr_nan": lambda r: r["train"].update(lr_g=float("nan")),
    "train_lr_inf": lambda r: r["train"].update(lr_g=float("inf")),
    "train_betas_one": lambda r: r["train"].update(betas=[1.0, 1.0]),
    "train_betas_short": lambda r: r["train"].update(betas=[0.5]),
    "train_betas_strings": lambda r: r["train"].update(betas=["a", "b"]),
    "train_loss_unknown": lambda r: r["train"].update(loss="wasserstein-ish"),
    "train_optimizer_unknown": lambda r: r["train"].update(optimizer="sgd"),
    "train_update_unknown": lambda r: r["train"].update(update="both"),
    "train_d_steps_zero": lambda r: r["train"].update(d_steps=0),
    "train_samples_zero": lambda r: r["train"].update(samples=0),
    "train_samples_huge": lambda r: r["train"].update(samples=100_000),
    "train_log_every_zero": lambda r: r["train"].update(log_every=0),
    "train_checkpoint_every_words": lambda r: r["train"].update(checkpoint_every="often"),
    "train_checkpoint_every_negative": lambda r: r["train"].update(checkpoint_every=-5),
    "train_checkpoint_every_bool": lambda r: r["train"].update(checkpoint_every=True),
    "train_keep_checkpoints_zero": lambda r: r["train"].update(keep_checkpoints=0),
    "train_label_smoothing_half": lambda r: r["train"].update(label_smoothing=0.5),
    "train_clip_value_negative": lambda r: r["train"].update(clip_value=-1.0),
    "train_max_loss_zero": lambda r: r["train"].update(max_loss=0),
    "train_on_exporter_error_unknown": lambda r: r["train"].update(on_exporter_error="ignore"),
    "export_not_a_list": lambda r: r.update(export={"use": "png"}),
    "export_entry_a_number": lambda r: r.update(export=[1]),
    "export_without_use": lambda r: r.update(export=[{"every": 5}]),
    "export_use_unknown": lambda r: r.update(export=[{"use": "tensorbored"}]),
    "export_every_words": lambda r: r.update(export=[{"use": "png", "every": "sometimes"}]),
    "export_columns_zero": lambda r: r.update(export=[{"use": "png", "columns": 0}]),
    "eval_not_a_table": lambda r: r.update(eval=3),
    "eval_metric_unknown": lambda r: r.update(eval={"metrics": ["psnr"]}),
    "eval_unknown_key": lambda r: r.update(eval={"metric": ["fid"]}),
    "sweep_not_a_table": lambda r: r.update(sweep=[1, 2]),
    "sweep_empty": lambda r: r.update(sweep={}),
    "sweep_values_not_a_list": lambda r: r.update(sweep={"train.lr_g": 1e-4}),
    "sweep_values_empty": lambda r: r.update(sweep={"train.lr_g": []}),
    "sweep_bad_value": lambda r: r.update(sweep={"train.lr_g": [1e-4, -1.0]}),
    "sweep_key_through_a_value": lambda r: r.update(sweep={"seed.x": [1, 2]}),
    "sweep_index_out_of_range": lambda r: r.update(sweep={"export.7.every": [1, 2]}),
    "sweep_too_large": lambda r: r.update(sweep={"seed": list(range(200)), "train.lr_g": [1e-4 * (i + 1) for i in range(60)]}),
    "dataset_root_missing": lambda r: r["dataset"].update(root="/nonexistent/mnist"),
    "dataset_root_is_a_file": lambda r: r["dataset"].update(root="/etc/hostname"),
}

SETS = {
    "no_equals": ["train.steps"],
    "no_key": ["=3"],
    "blank_key": ["  =3"],
    "empty_value": ["train.steps="],
    "value_a_word": ["train.steps=many"],
    "value_an_unclosed_list": ["train.betas=[0.5, 0.9"],
    "value_deeply_nested": ["train.betas=" + "[" * 50_000],
    "key_through_a_number": ["seed.x=1"],
    "key_through_a_string": ["name.first=a"],
    "list_index_out_of_range": ["export.9.every=1"],
    "list_index_not_a_number": ["export.first.every=1"],
    "list_index_negative": ["export.-1.every=1"],
    "replace_a_table_with_a_number": ["train=3"],
    "replace_dataset_with_a_list": ["dataset=[1, 2]"],
    "unknown_section": ["trainer.steps=3"],
    "unknown_component": ["backend.use=jax"],
    "batch_size_zero": ["train.batch_size=0"],
    "lr_nan": ["train.lr_g=nan"],
    "lr_negative_inf": ["train.lr_d=-inf"],
    "seed_overflow": ["seed=1e999"],
    "name_path_traversal": ["name=../../etc"],
    "second_of_two_bad": ["train.steps=2", "train.loss=hinge-ish"],
    "resume_only_options": ["train.steps=2", "architecture.latent_dim=-3"],
    "value_with_a_newline": ["name=a\nb"],
    "value_with_a_nul": ["name=a\0b"],
}


@pytest.fixture
def good_recipe(tiny_mnist):
    return recipe_dict(tiny_mnist, train={"steps": 2})


def expect_refusal(args, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, [*map(str, args), "--runs-dir", str(runs)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert not runs.exists()


@pytest.mark.parametrize("case", SYNTAX)
def test_malformed_toml(case, tmp_path):
    text = SYNTAX[case]
    path = tmp_path / "recipe.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    expect_refusal(["run", path], tmp_path)


@pytest.mark.parametrize("case", STRUCTURE)
def test_malformed_recipe(case, good_recipe, tmp_path):
    recipe = copy.deepcopy(good_recipe)
    STRUCTURE[case](recipe)
    path = tmp_path / "recipe.toml"
    path.write_text(tomli_w.dumps(recipe))
    expect_refusal(["run", path], tmp_path)


@pytest.mark.parametrize("case", SETS)
def test_malformed_set_argument(case, good_recipe, tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text(tomli_w.dumps(good_recipe))
    expect_refusal(["run", path, *(part for value in SETS[case] for part in ("--set", value))], tmp_path)


def test_the_suite_holds_at_least_100_cases():
    assert len(SYNTAX) + len(STRUCTURE) + len(SETS) >= 100
