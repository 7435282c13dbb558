"""Verification of a Bundle.signature that holds a JWS (``sigFormat`` application/jose).

Pure: no I/O and no trust store. The signer's key comes from the certificate in the JWS header
(``x5c``); the content to sign is the Bundle canonicalized as FHIR R4 defines it (json.html
"Canonical JSON"): properties in alphabetical order, no whitespace outside values, the
signature itself left out, plus what the named canonicalization removes (``#data``: narratives,
``#static``: narratives and meta, ``#document``: the root Bundle's id and meta). A certificate
proves integrity only: whether its subject is trusted is for the caller to decide.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from xml.parsers import expat

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

CANON_JSON = "http://hl7.org/fhir/canonicalization/json"
CANONICALIZATIONS = frozenset(
    {
        CANON_JSON,
        CANON_JSON + "#data",
        CANON_JSON + "#static",
        CANON_JSON + "#document",
        CANON_JSON + "#narrative",
    }
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_B64 = re.compile(r"[A-Za-z0-9+/\s]*={0,2}\s*")
_B64URL = re.compile(r"[A-Za-z0-9_\-]*")


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of checking a signature; ``code`` is an OperationOutcome issue type."""

    severity: Literal["error", "warning", "information"]
    code: str
    text: str


class _Unreadable(ValueError):
    """The signature data is not a JWS this module can read."""


def check_bundle_signature(bundle: dict[str, Any]) -> list[Finding]:
    """Verify ``bundle["signature"]`` if it is a JWS; findings in the Java validator's words."""
    signature = bundle.get("signature")
    if not isinstance(signature, dict) or signature.get("sigFormat") != "application/jose":
        return []
    data = signature.get("data")
    if not isinstance(data, str):
        return []
    out: list[Finding] = []
    try:
        jws = _decode_data(data, out)
        header = _json_part(jws[0], "header")
    except _Unreadable as exc:
        return [*out, Finding("error", "invalid", f"The signature data is not a valid JWS: {exc}")]
    if not isinstance(header, dict):
        return [*out, Finding("error", "invalid", "The JWS header is not a JSON object")]
    if "sigT" not in header:
        out.append(
            Finding(
                "warning",
                "not-found",
                "The signature does not have a signing time (sigT in the header)",
            )
        )
    method = _canonicalization(header, signature)
    if method not in CANONICALIZATIONS:
        out.append(
            Finding(
                "warning",
                "not-supported",
                f"The canonicalization {method} is not supported, so the signature can't be verified",
            )
        )
        return out
    unsigned = {k: v for k, v in bundle.items() if k != "signature"}
    content = canonical_json(unsigned, method)
    encoded_payload = jws[1]
    if encoded_payload:
        out.append(
            Finding(
                "warning",
                "value",
                "The signature has a payload, but the signature should be a detached signature with no payload",
            )
        )
        try:
            payload = _b64url(encoded_payload)
        except _Unreadable as exc:
            return [*out, Finding("error", "invalid", f"The JWS payload is not valid: {exc}")]
        content = _with_payload_numbers(content, payload, method)
        if content != payload:
            out.append(
                Finding(
                    "error",
                    "value",
                    f"The signature cannot be valid because the content to sign ({len(content):,} bytes) is not the same as the signed content ({len(payload):,} bytes)",
                )
            )
    key = _signer_key(header, out)
    if key is None:
        return out
    signing_input = (jws[0] + "." + _b64url_encode(content)).encode("ascii")
    try:
        signature_bytes = _b64url(jws[2])
        _verify(key, str(header.get("alg", "")), signature_bytes, signing_input)
    except (_Unreadable, InvalidSignature, ValueError) as exc:
        detail = f" ({exc})" if isinstance(exc, _Unreadable) else ""
        out.append(
            Finding(
                "error",
                "value",
                f"The signature did not verify against the provided certificate{detail}",
            )
        )
    else:
        out.append(Finding("information", "informational", "The signature verified OK"))
    return out


def canonical_json(resource: dict[str, Any], method: str = CANON_JSON) -> bytes:
    """The bytes a signer signs for ``resource`` under the canonicalization ``method``.

    Numbers are written as Python reads them (``1.50`` -> ``1.5``): the parsed JSON no longer
    knows how a decimal was spelled, so a detached signature over a decimal with trailing
    zeros cannot be reproduced (an attached payload's own spelling is used, see
    ``_with_payload_numbers``).
    """
    fragment = method.partition("#")[2]
    value = _strip(resource, fragment, root=True)
    return _dump(value).encode("utf-8")


def _canonicalization(header: dict[str, Any], signature: dict[str, Any]) -> str:
    canon = header.get("canon")
    if isinstance(canon, str):
        return canon
    target = signature.get("targetFormat")
    if isinstance(target, str):
        for param in target.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name == "canonicalization" and value:
                return value.strip('"')
    return CANON_JSON


def _strip(value: Any, fragment: str, *, root: bool) -> Any:
    """Remove what the canonicalization ``#fragment`` leaves out, at every resource."""
    if isinstance(value, list):
        return [_strip(v, fragment, root=False) for v in value]
    if not isinstance(value, dict):
        return value
    is_resource = isinstance(value.get("resourceType"), str)
    drop: tuple[str, ...] = ()
    if is_resource:
        if fragment == "data":
            drop = ("text",)
        elif fragment == "static":
            drop = ("text", "meta")
        elif fragment == "document" and root:
            drop = ("id", "meta")
        elif fragment == "narrative" and root:
            return {k: value[k] for k in ("resourceType", "id", "text") if k in value}
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k in drop:
            continue
        if k == "div" and isinstance(v, str):
            out[k] = canonical_xhtml(v)
        else:
            out[k] = _strip(v, fragment, root=False)
    return out


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_dump(k)}:{_dump(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, _Number):
        return value.text
    if isinstance(value, int | float | Decimal):
        return json.dumps(value) if not isinstance(value, Decimal) else str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


class _Number:
    """A JSON number kept as it was spelled in the payload (``1.50`` stays ``1.50``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _with_payload_numbers(content: bytes, payload: bytes, method: str) -> bytes:
    """``content`` with the payload's spelling of numbers, if that is all that differs."""
    if content == payload:
        return content
    try:
        as_floats = json.loads(payload)
        as_read = json.loads(payload, parse_float=_Number)
    except ValueError:
        return content
    if not isinstance(as_floats, dict) or canonical_json(as_floats, method) != content:
        return content
    return canonical_json(as_read, method)


def canonical_xhtml(div: str) -> str:
    """A narrative re-serialized as the HL7 reference implementation writes XHTML in JSON.

    Text escapes only ``&``, ``<`` and ``>`` (so ``&quot;`` becomes ``"``); attribute values
    also escape ``"``; attributes stay in document order; an element written empty stays
    ``<br/>``. Not well-formed XHTML is left as it is (the validator reports it elsewhere).
    """
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    out: list[str] = []
    stack: list[list[Any]] = []  # [name, has_children, opening tag index]

    def start(name: str, attrs: list[str]) -> None:
        if stack:
            stack[-1][1] = True
        pairs = "".join(
            f' {attrs[i]}="{_escape(attrs[i + 1], attribute=True)}"'
            for i in range(0, len(attrs), 2)
        )
        stack.append([name, False, len(out)])
        out.append(f"<{name}{pairs}>")

    def end(name: str) -> None:
        _, has_children, at = stack.pop()
        if not has_children and _empty_in_source(parser, div):
            out[at] = out[at][:-1] + "/>"
        else:
            out.append(f"</{name}>")

    def text(data: str) -> None:
        if stack:
            stack[-1][1] = True
        out.append(_escape(data, attribute=False))

    def comment(data: str) -> None:
        if stack:
            stack[-1][1] = True
        out.append(f"<!-- {data.strip()} -->")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.CommentHandler = comment
    try:
        parser.Parse(div.encode("utf-8"), True)
    except expat.ExpatError:
        return div
    return "".join(out)


def _empty_in_source(parser: Any, div: str) -> bool:
    # expat reports the end of an empty-element tag (<br/>) at the offset of its start tag.
    at = parser.CurrentByteIndex
    raw = div.encode("utf-8")
    return at >= 0 and not raw.startswith(b"</", at)


def _escape(text: str, *, attribute: bool) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        return text.replace('"', "&quot;")
    return "".join(f"&#x{ord(c):X};" if ord(c) > 0xFFFF else c for c in text)


def _decode_data(data: str, out: list[Finding]) -> list[str]:
    """The three parts of the compact JWS in ``Signature.data`` (base64 of the JWS text)."""
    if _B64.fullmatch(data):
        try:
            text = base64.b64decode(re.sub(r"\s+", "", data), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        parts = text.split(".")
        if len(parts) == 3:
            return parts
    parts = data.strip().split(".")
    if len(parts) == 3 and all(_B64URL.fullmatch(p) for p in parts):
        out.append(
            Finding(
                "error",
                "invalid",
                "The signature data is not valid base64 content, but it looks like native application/jose, so it will be checked anyway",
            )
        )
        return parts
    raise _Unreadable("it is neither base64 of a compact JWS nor a compact JWS")


def _b64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise _Unreadable("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _Unreadable("not base64url") from exc


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _json_part(encoded: str, label: str) -> Any:
    try:
        return json.loads(_b64url(encoded))
    except ValueError as exc:
        raise _Unreadable(f"the {label} is not JSON") from exc


def _signer_key(header: dict[str, Any], out: list[Finding]) -> Any:
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        out.append(
            Finding(
                "warning",
                "not-found",
                "Didn't find a provided certificate or a 'kid' in the header, so can't verify the signature"
                if "kid" not in header
                else f"The certificate for kid '{header['kid']}' is not available, so can't verify the signature",
            )
        )
        return None
    try:
        with warnings.catch_warnings():
            # Certificates with serial 0 (self-signed test certificates) still carry a key.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
        return cert.public_key()
    except (binascii.Error, ValueError) as exc:
        out.append(
            Finding(
                "warning",
                "not-found",
                f"The signing certificate in x5c could not be read ({exc}), so can't verify the signature",
            )
        )
        return None


def _verify(key: Any, alg: str, signature: bytes, signing_input: bytes) -> None:
    """Raise InvalidSignature (or _Unreadable for an algorithm/key mismatch) unless valid."""
    family, bits = alg[:2], alg[2:]
    digest = _HASHES.get(bits)
    if digest is None:
        raise _Unreadable(f"unsupported algorithm '{alg}'")
    if family == "RS" and isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, signing_input, padding.PKCS1v15(), digest())
    elif family == "PS" and isinstance(key, rsa.RSAPublicKey):
        algorithm = digest()
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        key.verify(signature, signing_input, pss, algorithm)
    elif family == "ES" and isinstance(key, ec.EllipticCurvePublicKey):
        # JWS carries r || s (RFC 7518 3.4); cryptography wants DER.
        half = len(signature) // 2
        if half == 0 or len(signature) % 2:
            raise InvalidSignature()
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        key.verify(der, signing_input, ec.ECDSA(digest()))
    else:
        raise _Unreadable(f"algorithm '{alg}' does not fit the certificate's key")
