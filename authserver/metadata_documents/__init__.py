"""Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document).

With AUTHSERVER_CLIENT_ID_METADATA=on, a `client_id` that is an https URL names a JSON document
at that URL holding the client's metadata. `fetch.py` gets it (one GET, SSRF rules, size and time
limits); `documents.py` turns it into a public, third-party `Client` and decides how long it
stays fresh. The client is kept as an ordinary `clients` row (registration "document") upserted
on each fetch, so every instance shares it and its freshness, and what references clients
(codes, refresh families, consent grants) works as for any client.
"""
