"""Signing keys: records, sealing at rest, the key ring a process signs with, the
lifecycle rules (next → active → retired | revoked), and the manager that applies them."""
