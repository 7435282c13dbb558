"""The authorization page at /auth/authorize: login, then consent to scopes, then the redirect."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from carenet.access import errors as access_errors
from carenet.access import oauth_errors
from carenet.access import oauth_pages as pages
from carenet.access.accounts import Account
from carenet.access.guardians import acting_for
from carenet.access.login import (
    LoginResult,
    begin_totp_enrolment,
    confirm_totp_enrolment,
    login_with_password,
    verify_totp,
)
from carenet.access.oauth_errors import OAUTH_CODES
from carenet.access.oauth_server import CarenetAuthorizationServer
from carenet.access.otp import login_with_code, send_login_code
from carenet.access.scopes import ScopeError, describe, parse_scopes
from carenet.access.sessions import new_csrf_secret
from carenet.api.auth import AuthService, oauth_request, oauth_response
from carenet.fhir.outcomes import OperationOutcomeError

log = logging.getLogger(__name__)


class AuthorizePages:
    """GET/POST /auth/authorize: validate the authorization request (authlib), log the user in
    (staff: password + TOTP; patients: phone + SMS code), ask for consent, redirect with the
    code. The request is re-validated at every step."""

    def __init__(self, svc: AuthService) -> None:
        self.svc = svc
        self.ctx = svc.ctx

    def html(self, body: str, status: int = 200, csrf: str | None = None) -> Response:
        response = HTMLResponse(
            body,
            status_code=status,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "form-action 'self'; frame-ancestors 'none'",
            },
        )
        if csrf is not None:
            self.svc.set_csrf(response, csrf)
        return response

    def error(self, err: OperationOutcomeError) -> Response:
        issue = err.issues[0]
        return self.html(pages.error_page(issue.details_code or "", issue.diagnostics), err.status)

    def oauth_error(
        self, server: CarenetAuthorizationServer, oreq: Any, exc: OAuth2Error
    ) -> Response:
        # With a verified redirect URI the app hears of the error; otherwise (unknown client,
        # unregistered redirect URI) it must not be redirected anywhere (RFC 6749 §4.1.2.1).
        if exc.redirect_uri:
            return oauth_response(*server.handle_error_response(oreq, exc))
        code = OAUTH_CODES.get(exc.error, "OAUTH-ERROR")
        text = f"授权请求无效 (invalid authorization request): {exc.description or exc.error}"
        return self.html(pages.error_page(code, text), 400)

    def get(self, request: Request) -> Response:
        args = parse_qsl(request.url.query, keep_blank_values=True)
        csrf = self.svc.csrf_secret(request) or new_csrf_secret()
        with self.svc.store.unit_of_work() as uow:
            conn = uow.repo.conn
            server = self.svc.server(conn)
            oreq = oauth_request(request, args, [])
            try:
                grant = server.get_consent_grant(oreq, end_user=None)
            except OAuth2Error as exc:
                return self.oauth_error(server, oreq, exc)
            account = self.svc.session_account(conn, request)
            if account is None:
                body = pages.login_page(
                    client_name=grant.client.name, csrf=csrf, oauth=request.url.query
                )
                return self.html(body, csrf=csrf)
            return self.consent(uow, grant, account, csrf, request.url.query)

    def consent(
        self, uow: Any, grant: Any, account: Account, csrf: str, oauth: str, status: int = 200
    ) -> Response:
        scope = grant.request.scope or ""
        try:
            patients = self.patient_choices(uow, account, scope)
        except OperationOutcomeError as err:
            return self.error(err)
        body = pages.consent_page(
            client_name=grant.client.name,
            csrf=csrf,
            oauth=oauth,
            scopes=describe_scopes(scope),
            patients=patients,
        )
        return self.html(body, status, csrf=csrf)

    def patient_choices(self, uow: Any, account: Account, scope: str) -> list[tuple[str, str]]:
        """Whose record patient/* scopes would open: the account's own Patient (after 实名认证)
        and its wards. None needed → []; needed but none → AUTH-REALNAME-REQUIRED."""
        scopes = parse_scopes(scope)
        if not any(s.context == "patient" or s.text == "launch/patient" for s in scopes):
            return []
        refs = acting_for(uow.repo.conn, account.id, clock=self.ctx.clock)
        if not refs:
            raise access_errors.realname_required()
        out = []
        for ref in refs:
            label = "本人 Myself" if ref == account.fhir_ref else f"被监护人 Ward {ref}"
            out.append((ref, f"{label} · {patient_name(uow.repo, ref)}".rstrip(" ·")))
        return out

    def post(self, request: Request, form: list[tuple[str, str]]) -> Response:
        f = dict(reversed(form))  # first value wins
        try:
            self.svc.check_csrf(request, f.get("csrf"))
        except OperationOutcomeError as err:
            return self.error(err)
        csrf = f["csrf"]
        oauth = f.get("oauth", "")
        args = parse_qsl(oauth, keep_blank_values=True)
        step = f.get("step", "")
        with self.svc.store.unit_of_work() as uow:
            server = self.svc.server(uow.repo.conn)
            oreq = oauth_request(request, args, [])
            try:
                grant = server.get_consent_grant(oreq, end_user=None)
            except OAuth2Error as exc:
                return self.oauth_error(server, oreq, exc)
        client_name = grant.client.name

        def login_form(err: OperationOutcomeError | None, where: str, **kw: Any) -> Response:
            body = pages.login_page(
                client_name=client_name,
                csrf=csrf,
                oauth=oauth,
                error=err.issues[0].diagnostics if err else None,
                error_for=where,
                **kw,
            )
            return self.html(body, err.status if err else 200, csrf=csrf)

        result: LoginResult | None = None
        if step == "password":
            name, password = f.get("login_name", ""), f.get("password", "")
            totp = f.get("totp") or None
            result = self.svc.login_step(
                request,
                lambda c: login_with_password(c, self.ctx, name, password, totp_code=totp),
            )
            if result.error is not None:
                return login_form(result.error, "password")
        elif step == "send-code":
            phone = f.get("phone", "")
            try:
                with self.svc.store.unit_of_work() as uow:
                    send_login_code(uow.repo.conn, self.ctx, phone)
                    uow.commit()
            except OperationOutcomeError as err:
                return login_form(err, "send-code", phone=phone)
            return login_form(None, "sms", phone=phone, code_sent=True)
        elif step == "sms":
            phone, code = f.get("phone", ""), f.get("code", "")
            result = self.svc.login_step(
                request, lambda c: login_with_code(c, self.ctx, phone, code)
            )
            if result.error is not None:
                return login_form(result.error, "sms", phone=phone, code_sent=True)
        elif step in ("totp", "totp-enrol"):
            ticket = f.get("ticket", "")
            try:
                account_id = self.svc.ticket_account(ticket, (step,))
            except OperationOutcomeError as err:
                return login_form(err, "password")
            code = f.get("code", "")
            check = verify_totp if step == "totp" else confirm_totp_enrolment
            result = self.svc.login_step(request, lambda c: check(c, self.ctx, account_id, code))
            if result.error is not None:
                msg = result.error.issues[0].diagnostics
                if step == "totp":
                    body = pages.totp_page(csrf=csrf, oauth=oauth, ticket=ticket, error=msg)
                else:
                    body = pages.totp_enrol_page(
                        csrf=csrf, oauth=oauth, ticket=ticket, secret="", uri="", error=msg
                    )
                return self.html(body, result.error.status, csrf=csrf)
        elif step == "consent":
            return self.decide(request, oauth, csrf, f)
        else:
            return self.error(oauth_errors.request_invalid("unknown step", "step"))
        return self.after_login(request, result, oauth, csrf)

    def after_login(
        self, request: Request, result: LoginResult | None, oauth: str, csrf: str
    ) -> Response:
        assert result is not None and result.account is not None
        account = result.account
        if result.next_step == "totp":
            ticket = self.svc.ticket(account, "totp")
            return self.html(pages.totp_page(csrf=csrf, oauth=oauth, ticket=ticket), csrf=csrf)
        if result.next_step == "totp-enrol":
            with self.svc.store.unit_of_work() as uow:
                enrolment = begin_totp_enrolment(uow.repo.conn, self.ctx, account.id)
                uow.commit()
            body = pages.totp_enrol_page(
                csrf=csrf,
                oauth=oauth,
                ticket=self.svc.ticket(account, "totp-enrol"),
                secret=enrolment.secret,
                uri=enrolment.provisioning_uri,
            )
            return self.html(body, csrf=csrf)
        new_csrf = new_csrf_secret()  # a fresh CSRF secret with the fresh session
        with self.svc.store.unit_of_work() as uow:
            server = self.svc.server(uow.repo.conn)
            grant = server.get_consent_grant(
                oauth_request(request, parse_qsl(oauth, keep_blank_values=True), []),
                end_user=account,
            )
            response = self.consent(uow, grant, account, new_csrf, oauth)
        self.svc.start_session(response, account, new_csrf)
        return response

    def decide(self, request: Request, oauth: str, csrf: str, f: dict[str, str]) -> Response:
        with self.svc.store.unit_of_work() as uow:
            conn = uow.repo.conn
            account = self.svc.session_account(conn, request)
            server = self.svc.server(conn)
            oreq = oauth_request(request, parse_qsl(oauth, keep_blank_values=True), [])
            try:
                grant = server.get_consent_grant(oreq, end_user=account)
            except OAuth2Error as exc:
                return self.oauth_error(server, oreq, exc)
            if account is None:
                body = pages.login_page(client_name=grant.client.name, csrf=csrf, oauth=oauth)
                return self.html(body, 401, csrf=csrf)
            approved = f.get("decision") == "approve"
            if approved:
                try:
                    choices = [ref for ref, _ in self.patient_choices(uow, account, oreq.scope)]
                except OperationOutcomeError as err:
                    return self.error(err)
                chosen = f.get("patient") or (choices[0] if choices else None)
                if choices and chosen not in choices:
                    return self.error(
                        oauth_errors.request_invalid("not a patient you may act for", "patient")
                    )
                oreq.launch_patient = chosen if choices else None
            status, body, headers = server.create_authorization_response(
                oreq, grant_user=account if approved else None, grant=grant
            )
            self.svc.record(
                conn,
                request,
                "authorize" if approved else "authorize-denied",
                account_id=account.id,
                client_id=grant.client.client_id,
            )
            uow.commit()
        return oauth_response(status, body, headers)


def patient_name(repo: Any, ref: str) -> str:
    try:
        resource = repo.read("Patient", ref.split("/", 1)[1])
    except (OperationOutcomeError, IndexError):
        return ""
    names = resource.get("name") or []
    if names and isinstance(names[0], dict):
        n = names[0]
        return str(n.get("text") or n.get("family", "") + "".join(n.get("given", [])))
    return ""


def describe_scopes(scope: str) -> list[tuple[str, str]]:
    try:
        return [describe(s) for s in parse_scopes(scope)]
    except ScopeError:
        return [(scope, scope)]
