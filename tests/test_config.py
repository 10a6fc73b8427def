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
