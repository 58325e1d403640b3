"""A small, real OpenID Connect provider on loopback, so a test can sign in to the app without the internet.

It speaks the authorization-code flow the way Streamlit's ``st.login`` (Authlib's Starlette client) uses it:
discovery metadata, ``/authorize`` (no login form: whoever the test put in ``next_user`` signs in at once),
``/token`` (client_secret_basic or client_secret_post, PKCE S256, single-use codes) returning an RS256-signed
ID token with the nonce of its authorization request, and ``/jwks`` with the public key. Only what a test
needs: one client, codes and keys in memory, gone when the provider stops.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

ID_TOKEN_LIFETIME_S = 3600


@dataclass
class _Grant:
    """What an authorization code stands for, until the token endpoint redeems it (once)."""

    claims: dict
    nonce: str | None
    redirect_uri: str
    code_challenge: str | None


@dataclass
class OidcProvider:
    """The provider; ``next_user`` holds the claims (at least ``sub``) of whoever signs in next."""

    client_id: str
    client_secret: str
    next_user: dict = field(default_factory=dict)
    signed_in: list[str] = field(default_factory=list)  # the subjects whose ID tokens were issued, in order

    def __post_init__(self) -> None:
        self._key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig", "alg": "RS256"})
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the endpoints' logic, free of HTTP --------------------------------------------------------

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "name", "email"],
        }

    def jwks(self) -> dict:
        return {"keys": [self._key.as_dict(private=False)]}

    def authorize(self, query: dict[str, str]) -> str:
        """The address to send the browser back to: the client's redirect URI with a code (or an error) and the state."""
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            raise ValueError("unknown client or redirect URI")
        answer = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            answer["error"] = "unsupported_response_type"
        elif not self.next_user.get("sub"):
            answer["error"] = "access_denied"  # nobody to sign in: the test forgot to choose
        elif query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            answer["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._grants[code] = _Grant(dict(self.next_user), query.get("nonce"), redirect_uri, query.get("code_challenge"))
            answer["code"] = code
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return f"{redirect_uri}{separator}{urlencode(answer)}"

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        """(HTTP status, JSON body) of the token endpoint for an authorization-code exchange."""
        client_id, client_secret = _client_credentials(form, authorization)
        if client_id != self.client_id or not secrets.compare_digest(client_secret or "", self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # single use, even when the rest is wrong
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        if grant.code_challenge and _s256(form.get("code_verifier", "")) != grant.code_challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims = {**grant.claims, "iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + ID_TOKEN_LIFETIME_S}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)
        self.signed_in.append(str(claims["sub"]))
        body = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": ID_TOKEN_LIFETIME_S,
                "scope": "openid email profile", "id_token": id_token}  # fmt: skip
        return 200, body


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str | None, str | None]:
    """The client's id and secret from HTTP Basic (client_secret_basic) or the form (client_secret_post)."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization.split(None, 1)[1]).decode()
        except (ValueError, UnicodeDecodeError):
            return None, None
        client_id, _, client_secret = decoded.partition(":")
        return unquote(client_id), unquote(client_secret)
    return form.get("client_id"), form.get("client_secret")


def _single_values(raw: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}


def _handler_for(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(200, provider.metadata())
            elif url.path == "/jwks":
                self._json(200, provider.jwks())
            elif url.path == "/authorize":
                try:
                    location = provider.authorize(_single_values(url.query))
                except ValueError as error:
                    self._json(400, {"error": "invalid_request", "error_description": str(error)})
                    return
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/token":
                self._json(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = _single_values(self.rfile.read(length).decode())
            self._json(*provider.token(form, self.headers.get("Authorization")))

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # quiet: the test's output is for the test
            pass

    return Handler


__all__ = ["OidcProvider"]
