import json

import pytest

from kaggle_kit.config import ConfigError, load_settings

DEFAULTS = {"sizes": [224, 512], "epochs": 4, "lr": 1e-3, "weights": None, "encoder": "resnet34"}


def _config(tmp_path, content):
    path = tmp_path / "settings.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return {"KAGGLE_KIT_CONFIG": str(path)}


def test_without_a_config_the_defaults_stand():
    assert load_settings(DEFAULTS, {}) == DEFAULTS


def test_a_config_file_overrides_some_settings(tmp_path):
    settings = load_settings(DEFAULTS, _config(tmp_path, {"sizes": [64], "lr": 1, "weights": "w.pth"}))

    assert settings == {**DEFAULTS, "sizes": [64], "lr": 1, "weights": "w.pth"}


def test_an_unknown_key_is_an_error_that_lists_the_known_ones(tmp_path):
    with pytest.raises(
        ConfigError, match="unknown setting\\(s\\) 'epoch' .* known settings: encoder, epochs, lr, sizes, weights"
    ):
        load_settings(DEFAULTS, _config(tmp_path, {"epoch": 2}))


def test_a_value_of_the_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="setting 'sizes'='224' .* should be a list"):
        load_settings(DEFAULTS, _config(tmp_path, {"sizes": "224"}))


def test_a_file_that_is_not_json_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="is not JSON"):
        load_settings(DEFAULTS, _config(tmp_path, "{sizes: 1"))


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(DEFAULTS, {"KAGGLE_KIT_CONFIG": str(tmp_path / "nope.json")})


KERNEL_LIKE = {"sizes": [224, 512], "epochs": [4, 4], "lrs": [1e-3, 3e-4], "bs": 8, "valid_pct": 0.1, "seed": 42,
               "num_workers": 2, "multi_label": False, "tta": ["hflip"], "weights": None}  # fmt: skip
KERNEL_LIKE_NONE = {**KERNEL_LIKE, "num_workers": None}  # the kernels' default: one worker per CPU core


@pytest.mark.parametrize(("override", "message"), [
    ({"bs": True}, "'bs'=True .* should be a whole number"),
    ({"bs": 8.7}, "'bs'=8.7 .* should be a whole number"),
    ({"sizes": ["big"]}, "'sizes'=\\['big'\\] .* should be a list of a whole number"),
    ({"seed": 1.5}, "'seed'=1.5 .* whole number"),
    ({"multi_label": 1}, "'multi_label'=1 .* true or false"),
    ({"tta": [1]}, "'tta'=\\[1\\] .* list of a str"),
    ({"valid_pct": 5}, "valid_pct .* between 0 and 1"),
    ({"num_workers": -3}, "num_workers .* whole number >= 0"),
    ({"workers": "four"}, "workers .* whole number >= 0"),  # a None default takes any type: the check still holds
    ({"bs": 0}, "bs .* must be positive"),
    ({"epochs": [1, -1]}, "epochs .* must be positive"),
    ({"sizes": [32]}, "the same length"),
])  # fmt: skip
def test_settings_are_typed_from_their_defaults_and_checked(override, message, tmp_path):
    defaults = KERNEL_LIKE_NONE if "workers" in override else KERNEL_LIKE
    override = {"num_workers": override["workers"]} if "workers" in override else override
    with pytest.raises(ConfigError, match=message):
        load_settings(defaults, _config(tmp_path, override))


def test_a_whole_number_for_a_float_setting_becomes_a_float(tmp_path):
    settings = load_settings(KERNEL_LIKE, _config(tmp_path, {"lrs": [1, 1], "valid_pct": 0.5, "weights": "w.pth"}))

    assert settings["lrs"] == [1, 1]
    assert settings["weights"] == "w.pth"


def test_a_kernels_own_check_runs_too(tmp_path):
    checks = {"bs": lambda v: None if v % 2 == 0 else "must be even"}

    with pytest.raises(ConfigError, match="setting bs .* must be even"):
        load_settings(KERNEL_LIKE, _config(tmp_path, {"bs": 7}), checks=checks)


def test_a_config_nested_100000_deep_is_one_config_error(tmp_path, monkeypatch):
    config = tmp_path / "deep.json"
    config.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    monkeypatch.setenv("KAGGLE_KIT_CONFIG", str(config))

    with pytest.raises(ConfigError, match="nested too deep"):
        load_settings({"a": 1})
