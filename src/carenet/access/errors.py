"""Coded refusals of identity and login, each with a stable ``details_code`` and its text in
Chinese and English (STYLE.md, "Errors"). The codes are listed in docs/identity.md."""

from __future__ import annotations

from carenet.fhir.outcomes import Issue, OperationOutcomeError


def auth_error(
    status: int,
    issue_type: str,
    code: str,
    zh: str,
    en: str,
    expression: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> OperationOutcomeError:
    """An OperationOutcomeError with one issue whose details carry ``code``."""
    issue = Issue("error", issue_type, f"{zh} ({en})", (expression,) if expression else (), code)
    return OperationOutcomeError(status, [issue], dict(headers or {}))


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, seconds))}


# --- login ---------------------------------------------------------------------------------


def bad_credentials() -> OperationOutcomeError:
    # The same text for an unknown login name and a wrong password: it must not reveal which
    # accounts exist.
    return auth_error(
        401, "login", "AUTH-BAD-CREDENTIALS", "用户名或密码错误", "wrong login name or password"
    )


def locked(retry_after_seconds: int) -> OperationOutcomeError:
    return auth_error(
        429,
        "throttled",
        "AUTH-LOCKED",
        "登录失败次数过多，账号已暂时锁定，请稍后再试",
        "too many failed logins: the login is locked for a while, try again later",
        headers=_retry_after(retry_after_seconds),
    )


def account_inactive(status: str) -> OperationOutcomeError:
    zh = {"locked": "已被管理员锁定", "suspended": "已被暂停", "disabled": "已停用"}.get(
        status, "不可用"
    )
    return auth_error(
        403, "suspended", "AUTH-ACCOUNT-INACTIVE", f"账号{zh}", f"the account is {status}"
    )


def totp_required() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "AUTH-TOTP-REQUIRED",
        "工作人员账号须输入动态验证码（双因素认证）",
        "staff accounts must give a TOTP code (second factor)",
        "totp",
    )


def totp_not_enrolled() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "AUTH-TOTP-NOT-ENROLLED",
        "工作人员账号须先绑定动态验证码",
        "staff accounts must enrol a TOTP authenticator first",
    )


def totp_invalid() -> OperationOutcomeError:
    return auth_error(
        401, "login", "AUTH-TOTP-INVALID", "动态验证码错误", "wrong TOTP code", "totp"
    )


def totp_replayed() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "AUTH-TOTP-REPLAYED",
        "该动态验证码已使用过，请等待下一个验证码",
        "this TOTP code has already been used; wait for the next one",
        "totp",
    )


def totp_already_enrolled() -> OperationOutcomeError:
    return auth_error(
        409,
        "conflict",
        "AUTH-TOTP-ALREADY-ENROLLED",
        "账号已绑定动态验证码；更换须由管理员重置",
        "a TOTP authenticator is already enrolled; an administrator must reset it first",
    )


def totp_no_pending() -> OperationOutcomeError:
    return auth_error(
        409,
        "conflict",
        "AUTH-TOTP-NO-PENDING-ENROLMENT",
        "没有待确认的动态验证码绑定",
        "there is no TOTP enrolment waiting for confirmation",
    )


# --- SMS one-time codes ---------------------------------------------------------------------


def otp_invalid(remaining: int | None = None) -> OperationOutcomeError:
    zh, en = "短信验证码错误或未发送", "wrong or unknown one-time code"
    if remaining is not None:
        zh, en = f"{zh}，还可尝试{remaining}次", f"{en}; {remaining} attempts left"
    return auth_error(401, "login", "AUTH-OTP-INVALID", zh, en, "code")


def otp_expired() -> OperationOutcomeError:
    return auth_error(
        401,
        "expired",
        "AUTH-OTP-EXPIRED",
        "短信验证码已过期，请重新获取",
        "the one-time code has expired; ask for a new one",
        "code",
    )


def otp_replayed() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "AUTH-OTP-REPLAYED",
        "短信验证码已使用过，请重新获取",
        "the one-time code has already been used; ask for a new one",
        "code",
    )


def otp_too_many_attempts() -> OperationOutcomeError:
    return auth_error(
        429,
        "throttled",
        "AUTH-OTP-TOO-MANY-ATTEMPTS",
        "验证码错误次数过多，该验证码已失效，请重新获取",
        "too many wrong attempts: the one-time code is void, ask for a new one",
        "code",
    )


def otp_rate_limited(retry_after_seconds: int) -> OperationOutcomeError:
    return auth_error(
        429,
        "throttled",
        "AUTH-OTP-RATE-LIMITED",
        "验证码发送过于频繁，请稍后再试",
        "one-time codes are being requested too often; try again later",
        "phone",
        headers=_retry_after(retry_after_seconds),
    )


# --- registration ---------------------------------------------------------------------------


def phone_invalid() -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-PHONE-INVALID",
        "手机号码格式错误，应为11位中国大陆手机号",
        "not a mainland China mobile number (11 digits starting 13-19)",
        "phone",
    )


def phone_taken() -> OperationOutcomeError:
    return auth_error(
        409, "duplicate", "AUTH-PHONE-TAKEN", "该手机号码已注册", "this phone number is registered"
    )


def login_name_invalid() -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-LOGIN-NAME-INVALID",
        "登录名应为3至64位字母、数字或 . _ - @",
        "a login name is 3 to 64 letters, digits or . _ - @",
        "login_name",
    )


def login_name_taken() -> OperationOutcomeError:
    return auth_error(
        409, "duplicate", "AUTH-LOGIN-NAME-TAKEN", "该登录名已被使用", "this login name is taken"
    )


def password_weak(min_length: int) -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-PASSWORD-WEAK",
        f"密码至少{min_length}位，且须包含字母和数字",
        f"a password has at least {min_length} characters, with letters and digits",
        "password",
    )


def role_invalid(role: str) -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-ROLE-INVALID",
        f"角色{role!r}不适用于此类账号",
        f"role {role!r} is not valid for this kind of account",
        "role",
    )


def reference_invalid(ref: str, expected: str) -> OperationOutcomeError:
    return auth_error(
        422,
        "invalid",
        "AUTH-REFERENCE-INVALID",
        f"引用{ref!r}无效：应为现存的{expected}",
        f"reference {ref!r} is not an existing {expected}",
    )


def account_not_found() -> OperationOutcomeError:
    return auth_error(404, "not-found", "AUTH-ACCOUNT-NOT-FOUND", "账号不存在", "no such account")


# --- real name ------------------------------------------------------------------------------


def realname_required() -> OperationOutcomeError:
    return auth_error(
        403,
        "forbidden",
        "AUTH-REALNAME-REQUIRED",
        "请先完成实名认证",
        "real-name verification is required first",
    )


def realname_name_invalid() -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-REALNAME-NAME-INVALID",
        "姓名应为1至50个字符，不含数字和特殊符号",
        "a name is 1 to 50 characters without digits or special symbols",
        "name",
    )


def realname_mismatch() -> OperationOutcomeError:
    return auth_error(
        422,
        "business-rule",
        "AUTH-REALNAME-MISMATCH",
        "姓名与身份证号码登记的姓名不一致",
        "the name does not match the name registered for this resident ID",
        "name",
    )


def realname_not_applicable() -> OperationOutcomeError:
    return auth_error(
        422,
        "business-rule",
        "AUTH-REALNAME-NOT-APPLICABLE",
        "只有患者账号通过身份证实名认证",
        "only patient accounts verify their real name with a resident ID",
    )


def realname_already_verified() -> OperationOutcomeError:
    return auth_error(
        409,
        "conflict",
        "AUTH-REALNAME-ALREADY-VERIFIED",
        "账号已实名认证为另一身份",
        "the account is already verified as another person",
    )


def realname_already_bound() -> OperationOutcomeError:
    return auth_error(
        409,
        "duplicate",
        "AUTH-REALNAME-ALREADY-BOUND",
        "该身份证号码已绑定其他账号",
        "this resident ID is bound to another account",
        "resident_id",
    )


def duplicate_patients() -> OperationOutcomeError:
    return auth_error(
        409,
        "duplicate",
        "AUTH-REALNAME-DUPLICATE-PATIENTS",
        "该身份证号码对应多个患者档案，请联系管理员合并",
        "several Patient records carry this resident ID; an administrator must merge them",
    )


# --- guardians ------------------------------------------------------------------------------


def guardian_relationship_invalid(code: str) -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-GUARDIAN-RELATIONSHIP-INVALID",
        f"关系代码{code!r}不是可用的监护关系",
        f"relationship {code!r} is not a guardian relationship CareNet accepts",
        "relationship",
    )


def guardian_already_bound() -> OperationOutcomeError:
    return auth_error(
        409,
        "duplicate",
        "AUTH-GUARDIAN-ALREADY-BOUND",
        "已绑定为该患者的监护人",
        "already bound as a guardian of this patient",
    )


def guardian_self() -> OperationOutcomeError:
    return auth_error(
        422,
        "business-rule",
        "AUTH-GUARDIAN-SELF",
        "不能绑定本人为被监护人",
        "an account cannot be its own guardian",
    )


# --- practitioner roles ---------------------------------------------------------------------


def role_duplicate() -> OperationOutcomeError:
    return auth_error(
        409,
        "duplicate",
        "AUTH-ROLE-DUPLICATE",
        "该医务人员在此机构已有执业登记",
        "the practitioner already has a role at this institution",
    )


def role_not_found(ref: str) -> OperationOutcomeError:
    return auth_error(
        404,
        "not-found",
        "AUTH-ROLE-NOT-FOUND",
        f"执业登记{ref}不存在",
        f"no practitioner role {ref}",
    )


def role_state(current: str, action: str) -> OperationOutcomeError:
    return auth_error(
        409,
        "business-rule",
        "AUTH-ROLE-STATE",
        f"执业登记当前状态为{current}，不能{action}",
        f"a practitioner role in state {current} cannot be {action}",
    )


def role_licence_mismatch() -> OperationOutcomeError:
    return auth_error(
        422,
        "business-rule",
        "AUTH-ROLE-LICENCE-MISMATCH",
        "执业证书编码与医务人员档案不一致",
        "the licence number does not match the Practitioner's identifiers",
        "licence_number",
    )


def role_not_active() -> OperationOutcomeError:
    return auth_error(
        403,
        "forbidden",
        "AUTH-ROLE-NOT-ACTIVE",
        "在该机构没有已审核且有效的执业登记",
        "no active, verified practitioner role at this institution",
    )


def verifier_not_allowed() -> OperationOutcomeError:
    return auth_error(
        403,
        "forbidden",
        "AUTH-ROLE-VERIFIER-NOT-ALLOWED",
        "只有该机构管理员或区域管理员可以审核或暂停执业登记",
        "only an admin of the institution or a regional admin may verify or suspend a role",
    )


def login_method_not_allowed() -> OperationOutcomeError:
    return auth_error(
        403,
        "security",
        "AUTH-LOGIN-METHOD-NOT-ALLOWED",
        "工作人员账号须使用用户名、密码和动态验证码登录",
        "staff accounts log in with login name, password and TOTP code",
    )
