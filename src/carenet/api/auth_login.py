"""The portals' JSON login API under /auth: password (+ TOTP for staff), phone + code, real-name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from carenet.access import oauth_errors
from carenet.access.login import (
    LoginResult,
    begin_totp_enrolment,
    confirm_totp_enrolment,
    login_with_password,
    verify_totp,
)
from carenet.access.otp import login_with_code, send_login_code
from carenet.access.realname import verify_real_name
from carenet.access.sessions import new_csrf_secret
from carenet.api.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthService,
    account_json,
    json_response,
    optional_field,
    outcome_response,
    text_field,
)

log = logging.getLogger(__name__)


class LoginApi:
    """The portals' JSON login API (docs/identity.md, "Login flows"). A finished login sets the
    session cookie and returns the CSRF token to send as ``X-CSRF-Token``; an unfinished staff
    login returns a short-lived ``ticket`` for the TOTP step."""

    def __init__(self, svc: AuthService) -> None:
        self.svc = svc
        self.ctx = svc.ctx

    def routes(self) -> list[tuple[str, str, Callable[[Request, dict[str, Any]], Response], str]]:
        return [
            ("/auth/login", "POST", self.login, "Log in: login name + password (+ TOTP)"),
            ("/auth/totp/verify", "POST", self.totp_verify, "Staff login, second step: TOTP"),
            ("/auth/totp/enrol", "POST", self.totp_enrol, "Begin TOTP enrolment (first login)"),
            ("/auth/totp/confirm", "POST", self.totp_confirm, "Confirm TOTP enrolment"),
            ("/auth/otp/send", "POST", self.otp_send, "Send a patient a login code by SMS"),
            ("/auth/otp/verify", "POST", self.otp_verify, "Patient login: phone + SMS code"),
            ("/auth/realname", "POST", self.realname, "Real-name verification (实名认证)"),
            ("/auth/logout", "POST", self.logout, "End the portal session"),
            ("/auth/session", "GET", self.session, "The logged-in account and CSRF token"),
        ]

    def finish(self, result: LoginResult) -> Response:
        if result.error is not None:
            return outcome_response(result.error)
        assert result.account is not None
        if result.next_step != "done":
            step = str(result.next_step)
            return json_response(
                {"next_step": step, "ticket": self.svc.ticket(result.account, step)}
            )
        csrf = new_csrf_secret()
        response = json_response(
            {"next_step": "done", "account": account_json(result.account), "csrf_token": csrf}
        )
        self.svc.start_session(response, result.account, csrf)
        return response

    def login(self, request: Request, data: dict[str, Any]) -> Response:
        name, password = text_field(data, "login_name"), text_field(data, "password")
        totp = optional_field(data, "totp")
        return self.finish(
            self.svc.login_step(
                request,
                lambda c: login_with_password(c, self.ctx, name, password, totp_code=totp),
            )
        )

    def totp_verify(self, request: Request, data: dict[str, Any]) -> Response:
        account_id = self.svc.ticket_account(optional_field(data, "ticket"), ("totp",))
        code = text_field(data, "code")
        return self.finish(
            self.svc.login_step(request, lambda c: verify_totp(c, self.ctx, account_id, code))
        )

    def totp_enrol(self, request: Request, data: dict[str, Any]) -> Response:
        account_id = self.svc.ticket_account(optional_field(data, "ticket"), ("totp-enrol",))
        with self.svc.store.unit_of_work() as uow:
            enrolment = begin_totp_enrolment(uow.repo.conn, self.ctx, account_id)
            uow.commit()
        return json_response(
            {"secret": enrolment.secret, "provisioning_uri": enrolment.provisioning_uri}
        )

    def totp_confirm(self, request: Request, data: dict[str, Any]) -> Response:
        account_id = self.svc.ticket_account(optional_field(data, "ticket"), ("totp-enrol",))
        code = text_field(data, "code")
        return self.finish(
            self.svc.login_step(
                request, lambda c: confirm_totp_enrolment(c, self.ctx, account_id, code)
            )
        )

    def otp_send(self, request: Request, data: dict[str, Any]) -> Response:
        phone = text_field(data, "phone")
        with self.svc.store.unit_of_work() as uow:
            send_login_code(uow.repo.conn, self.ctx, phone)
            uow.commit()
        return json_response({"sent": True}, 202)

    def otp_verify(self, request: Request, data: dict[str, Any]) -> Response:
        phone, code = text_field(data, "phone"), text_field(data, "code")
        return self.finish(
            self.svc.login_step(request, lambda c: login_with_code(c, self.ctx, phone, code))
        )

    def realname(self, request: Request, data: dict[str, Any]) -> Response:
        self.svc.check_csrf(request, request.headers.get(CSRF_HEADER))
        name, resident_id = text_field(data, "name"), text_field(data, "resident_id")
        with self.svc.store.unit_of_work() as uow:
            account = self.svc.session_account(uow.repo.conn, request)
            if account is None:
                raise oauth_errors.session_required()
            result = verify_real_name(
                uow.repo.conn, uow.repo, self.ctx, account.id, name, resident_id
            )
            uow.commit()
        return json_response(
            {
                "account": account_json(result.account),
                "patient": result.patient_ref,
                "created_patient": result.created_patient,
                "warnings": [
                    {"code": w.code, "message": f"{w.message_zh} ({w.message_en})"}
                    for w in result.warnings
                ],
            }
        )

    def session(self, request: Request, data: dict[str, Any]) -> Response:
        with self.svc.store.unit_of_work() as uow:
            account = self.svc.session_account(uow.repo.conn, request)
        if account is None:
            raise oauth_errors.session_required()
        return json_response(
            {"account": account_json(account), "csrf_token": self.svc.csrf_secret(request)}
        )

    def logout(self, request: Request, data: dict[str, Any]) -> Response:
        self.svc.check_csrf(request, request.headers.get(CSRF_HEADER))
        response = json_response({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
