"""Notification templates render with their parameters and refuse unknown ones."""

from __future__ import annotations

import pytest

from carenet.adapters.notify.templates import render


def test_login_code_template_names_code_and_validity() -> None:
    assert render("login-code", {"code": "042137", "minutes": 5}) == (
        "【CareNet】您的登录验证码为042137，5分钟内有效，请勿泄露给他人。"
    )


def test_unknown_template_or_missing_parameter_is_an_error() -> None:
    with pytest.raises(KeyError):
        render("no-such-template", {})
    with pytest.raises(KeyError):
        render("login-code", {"code": "1"})
