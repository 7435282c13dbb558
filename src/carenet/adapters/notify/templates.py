"""Message templates by name, in the words an SMS gateway's approved template would use."""

from __future__ import annotations

from collections.abc import Mapping

#: Chinese SMS gateways send only pre-approved templates with parameters, hence names + params.
TEMPLATES: dict[str, str] = {
    "login-code": "【CareNet】您的登录验证码为{code}，{minutes}分钟内有效，请勿泄露给他人。",
}


def render(template: str, params: Mapping[str, object]) -> str:
    """The text of a message; KeyError for an unknown template or a missing parameter."""
    return TEMPLATES[template].format(**params)
