"""Identities, login, OAuth2/SMART tokens, roles, consent and the per-actor repository (issue 3).

Identity and login (docs/identity.md): ``accounts`` (registration, status), ``login`` (password,
lockout, TOTP), ``otp`` (patients' SMS-code login), ``realname`` (实名认证, one Patient per
resident ID), ``guardians`` (RelatedPerson, ``acting_for``), ``practitioners`` (PractitionerRole
per institution, ``active_roles``); their tables in ``schema``, numbers in ``policy``, codes in
``errors``, pure rules in ``rules``.
"""
