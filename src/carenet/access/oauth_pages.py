"""The HTML of the authorization step: login (staff: password + TOTP; patients: phone + SMS
code), TOTP enrolment, consent and error pages. Pure functions from values to HTML; every value
is escaped. Labels are Chinese with English beside them.

Each form posts back to ``/auth/authorize`` with the CSRF token and the original authorization
request (``oauth``, re-validated at every step, so tampering with it gains nothing).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:34rem;
margin:2rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}
label{display:block;margin:.6rem 0 .2rem}input,select{width:100%;padding:.4rem;font-size:1rem}
button{margin-top:.8rem;padding:.5rem 1rem;font-size:1rem}
.error{color:#b00020;margin:.3rem 0}.hint{color:#555;font-size:.9rem}
section{border:1px solid #ddd;border-radius:.5rem;padding:0 1rem 1rem;margin:1rem 0}
code{word-break:break-all}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>CareNet · {esc(title)}</h1>{body}</body></html>"
    )


def _hidden(csrf: str, oauth: str, step: str, extra: dict[str, str] | None = None) -> str:
    fields = {"csrf": csrf, "oauth": oauth, "step": step, **(extra or {})}
    return "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items()
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{esc(message)}</p>' if message else ""


def login_page(
    *,
    client_name: str,
    csrf: str,
    oauth: str,
    error: str | None = None,
    error_for: str | None = None,
    phone: str = "",
    code_sent: bool = False,
) -> str:
    """Both ways in: staff (login name, password, TOTP) and patients (phone, SMS code)."""
    staff_error = error if error_for == "password" else None
    patient_error = error if error_for in ("sms", "send-code") else None
    sms_code = (
        '<label for="code">短信验证码 SMS code</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>'
        '<button type="submit">登录 Log in</button>'
        if code_sent
        else ""
    )
    body = (
        f"<p>应用 <strong>{esc(client_name)}</strong> 请求访问您的数据，请先登录。"
        f"<br><span class=hint>The app {esc(client_name)} asks for access; log in first.</span></p>"
        '<section><h2>工作人员登录 Staff</h2><form method="post" action="/auth/authorize">'
        + _hidden(csrf, oauth, "password")
        + '<label for="login_name">用户名 Login name</label>'
        '<input id="login_name" name="login_name" autocomplete="username" required>'
        '<label for="password">密码 Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<label for="totp">动态验证码 TOTP code <span class=hint>(工作人员 staff)</span></label>'
        '<input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code">'
        + _error(staff_error)
        + '<button type="submit">登录 Log in</button></form></section>'
        '<section><h2>患者登录 Patients</h2><form method="post" action="/auth/authorize">'
        + _hidden(csrf, oauth, "sms" if code_sent else "send-code")
        + '<label for="phone">手机号码 Mobile number</label>'
        f'<input id="phone" name="phone" inputmode="tel" autocomplete="tel" value="{esc(phone)}" '
        "required>"
        + sms_code
        + _error(patient_error)
        + ("" if code_sent else '<button type="submit">获取验证码 Send code</button>')
        + "</form></section>"
    )
    return _page("登录 Log in", body)


def totp_page(*, csrf: str, oauth: str, ticket: str, error: str | None = None) -> str:
    body = (
        '<form method="post" action="/auth/authorize">'
        + _hidden(csrf, oauth, "totp", {"ticket": ticket})
        + '<label for="code">动态验证码 TOTP code</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>'
        + _error(error)
        + '<button type="submit">验证 Verify</button></form>'
    )
    return _page("双因素认证 Second factor", body)


def totp_enrol_page(
    *, csrf: str, oauth: str, ticket: str, secret: str, uri: str, error: str | None = None
) -> str:
    body = (
        "<p>工作人员账号须绑定动态验证码。请在身份验证器应用中添加以下密钥，然后输入当前验证码。"
        "<br><span class=hint>Staff accounts need an authenticator: add this key to your "
        "authenticator app, then enter its current code.</span></p>"
        + (
            f"<p>密钥 Key: <code>{esc(secret)}</code></p><p class=hint><code>{esc(uri)}</code></p>"
            if secret
            else ""
        )
        + '<form method="post" action="/auth/authorize">'
        + _hidden(csrf, oauth, "totp-enrol", {"ticket": ticket})
        + '<label for="code">动态验证码 TOTP code</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>'
        + _error(error)
        + '<button type="submit">绑定并登录 Enrol and log in</button></form>'
    )
    return _page("绑定动态验证码 Enrol authenticator", body)


def consent_page(
    *,
    client_name: str,
    csrf: str,
    oauth: str,
    scopes: Sequence[tuple[str, str]],
    patients: Sequence[tuple[str, str]] = (),
    error: str | None = None,
) -> str:
    """The scopes in words and, for patient/* scopes, whose record (self or a ward)."""
    items = "".join(f"<li>{esc(zh)}<br><span class=hint>{esc(en)}</span></li>" for zh, en in scopes)
    picker = ""
    if patients:
        options = "".join(
            f'<option value="{esc(ref)}">{esc(label)}</option>' for ref, label in patients
        )
        picker = (
            '<label for="patient">代谁授权 On whose behalf</label>'
            f'<select id="patient" name="patient">{options}</select>'
        )
    body = (
        f"<p>应用 <strong>{esc(client_name)}</strong> 请求以下权限："
        f"<br><span class=hint>The app {esc(client_name)} asks to:</span></p><ul>{items}</ul>"
        '<form method="post" action="/auth/authorize">'
        + _hidden(csrf, oauth, "consent")
        + picker
        + _error(error)
        + '<button type="submit" name="decision" value="approve">同意 Allow</button> '
        '<button type="submit" name="decision" value="deny">拒绝 Deny</button></form>'
    )
    return _page("授权 Authorize", body)


def error_page(code: str, message: str) -> str:
    body = f'<p class="error" role="alert">{esc(message)}</p><p class=hint>{esc(code)}</p>'
    return _page("无法继续 Cannot continue", body)
