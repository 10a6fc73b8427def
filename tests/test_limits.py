import pytest

from kaggle_kit.errors import LimitsError
from kaggle_kit.limits import PROFILES, KernelLimits, parse_duration, parse_size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("17GB", 17 * 10**9),
        ("2GiB", 2 * 2**30),
        ("512 MiB", 512 * 2**20),
        ("1e9", 10**9),
        (4096, 4096),
        ("1.5GiB", 3 * 2**29),
        ("100kb", 100_000),
    ],
)
def test_parse_size_reads_decimal_and_binary_units(raw, expected):
    assert parse_size(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("90s", 90.0), ("9h", 32400.0), ("30min", 1800.0), ("1.5h", 5400.0), ("1h30m", 5400.0), ("45", 45.0), (2.5, 2.5)],
)
def test_parse_duration_reads_units(raw, expected):
    assert parse_duration(raw) == expected


@pytest.mark.parametrize("raw", ["lots", "17XB", "", "-1GB", "0", "GB"])
def test_parse_size_rejects_malformed_values_naming_them(raw):
    with pytest.raises(LimitsError, match="is not a size|must be a positive") as info:
        parse_size(raw, "KAGGLE_KIT_MEMORY_LIMIT")
    assert "KAGGLE_KIT_MEMORY_LIMIT" in str(info.value)
    assert info.value.value == raw


@pytest.mark.parametrize("raw", ["soon", "9 hours", "", "-5s", "1h1x"])
def test_parse_duration_rejects_malformed_values(raw):
    with pytest.raises(LimitsError, match="duration"):
        parse_duration(raw, "KAGGLE_KIT_TIME_LIMIT")


def test_default_limits_are_the_product_cards():
    limits = KernelLimits.from_env({})

    assert (limits.memory_bytes, limits.time_s, limits.max_files) == (17 * 10**9, 9 * 3600, 500)


def test_profiles_hold_todays_kaggle_sessions():
    assert (PROFILES["cpu"].memory_bytes, PROFILES["cpu"].time_s) == (30 * 10**9, 12 * 3600)
    assert (PROFILES["gpu"].memory_bytes, PROFILES["gpu"].time_s) == (29 * 10**9, 12 * 3600)
    assert all(p.working_bytes == 20 * 10**9 for p in PROFILES.values())


def test_environment_overrides_apply_on_top_of_the_profile():
    env = {
        "KAGGLE_KIT_PROFILE": "gpu",
        "KAGGLE_KIT_MEMORY_LIMIT": "2GiB",
        "KAGGLE_KIT_TIME_LIMIT": "90s",
        "KAGGLE_KIT_MAX_FILES": "20",
    }

    limits = KernelLimits.from_env(env)

    assert (limits.profile, limits.memory_bytes, limits.time_s, limits.max_files) == ("gpu", 2 * 2**30, 90.0, 20)


def test_malformed_environment_value_is_a_one_line_error_naming_the_variable():
    with pytest.raises(LimitsError, match=r"^KAGGLE_KIT_MAX_FILES='many' is not a file count"):
        KernelLimits.from_env({"KAGGLE_KIT_MAX_FILES": "many"})


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(LimitsError, match="unknown limits profile 'tpu'; choose one of card, cpu, gpu"):
        KernelLimits.from_env({"KAGGLE_KIT_PROFILE": "tpu"})


def test_limits_round_trip_through_the_environment():
    limits = KernelLimits().with_overrides(memory="3GiB", time="75s", max_files=7)

    assert KernelLimits.from_env(limits.to_env()) == limits


def test_limits_errors_survive_pickling():
    import pickle

    err = LimitsError("bad value", "x")
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.value) == ("bad value", "x")
