"""Mail: a message composed from templates into the outbox (compose.py), and delivered over
SMTP off the request path (sender.py)."""
