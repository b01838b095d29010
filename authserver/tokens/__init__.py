"""Tokens the server issues and takes back: access, ID and refresh tokens,
authorization codes, PKCE, scopes, the JOSE signing helper and the denylist."""
