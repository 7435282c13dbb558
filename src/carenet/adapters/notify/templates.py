"""Message templates by name, in the words an SMS gateway's approved template would use."""

from __future__ import annotations

from collections.abc import Mapping

#: Chinese SMS gateways send only pre-approved templates with parameters, hence names + params.
TEMPLATES: dict[str, str] = {
    "login-code": "【CareNet】您的登录验证码为{code}，{minutes}分钟内有效，请勿泄露给他人。",
    "appointment-booked": "【CareNet】您已成功预约{time}的号源，请按时就诊；如需取消请提前办理。",
    "appointment-rescheduled": "【CareNet】您的预约已改至{time}，原预约已取消。",
    "appointment-reminder": "【CareNet】温馨提示：您预约了{time}的门诊，请携带身份证件按时签到。",
    "clinic-stopped": "【CareNet】很抱歉，{time}的门诊因{reason}停诊，您的预约已取消，号源费用将原路退回。",
    "queue-ahead": "【CareNet】候诊提醒：您前面还有{ahead}位患者，请到诊区等候。",
    "queue-called": "【CareNet】请{number}号患者到诊室就诊。",
}


def render(template: str, params: Mapping[str, object]) -> str:
    """The text of a message; KeyError for an unknown template or a missing parameter."""
    return TEMPLATES[template].format(**params)
