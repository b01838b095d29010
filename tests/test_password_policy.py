"""The password policy on its own: the rules, in order, and what it hands the hasher."""

from __future__ import annotations

import unicodedata

import pytest

from authserver.accounts.password_policy import check_password, common_passwords
from authserver.config import SettingsError, load_settings
from authserver.errors import InvalidRequest


def test_the_common_list_is_zxcvbns_not_ours() -> None:
    listed = common_passwords()
    assert len(listed) >= 30_000
    assert {"password", "123456", "qwertyuiop"} <= listed


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("eleven char", "shorter than 12"),
        ("é" * 1025, "longer than 1024"),
        ("ﬀ" * 600, "longer than 1024"),  # NFKC makes each ligature two letters
        ("Margaret.Hamilton", "is the username"),
        ("qwerty123456", "commonly used"),
        ("PeanutButter", "commonly used"),
    ],
)
def test_each_rule_is_named_and_the_password_never_is(password: str, rule: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_password(password, "margaret.hamilton", 12)
    assert rule in refused.value.description
    assert password not in refused.value.description


def test_any_unicode_passes_and_is_handed_on_nfkc_normalised() -> None:
    typed = unicodedata.normalize("NFD", "Ｐａｓｓ ｆüｒ Ｍａｒｇａｒｅｔ")
    assert check_password(typed, "margaret", 12) == "Pass für Margaret"


def test_the_minimum_length_is_a_setting() -> None:
    assert load_settings({}).password_min_length == 12
    settings = load_settings({"AUTHSERVER_PASSWORD_MIN_LENGTH": "20"})
    assert settings.password_min_length == 20
    with pytest.raises(InvalidRequest):
        check_password("nineteen characters", "bob", settings.password_min_length)
    with pytest.raises(SettingsError):
        load_settings({"AUTHSERVER_PASSWORD_MIN_LENGTH": "0"})
