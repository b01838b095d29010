// The official MCP TypeScript SDK's client (npm @modelcontextprotocol/sdk, pinned in
// package.json) against an MCP server protected by authserver, with no client registered by
// hand: the SDK's own auth() does discovery (RFC 9728, then RFC 8414), registration and the
// code flow with PKCE and `resource`; this file only implements its OAuthClientProvider, as an
// MCP host application does, and logs what went over the wire.
//
//   node mcp_client.mjs --server URL [--other URL] [--client-id-url URL --callback-port N]
//
// Every line of stdout is one JSON object, the transcript: {"http": ...} for each request the
// SDK made (method, URL, status, challenge; never a token, code or secret), {"step": ...} for
// what the client did. The browser step is the caller's: on {"step": "authorize", "url": ...}
// it opens the URL, signs in, and lets its browser follow the redirect to our loopback
// callback (a real HTTP listener, as MCP hosts on a desktop have), which hands us the code.
//
// Then: call a tool; drop the access token (as when it expired) so the next call's 401 makes
// the SDK refresh; call again. With --other, present this server's access token to another MCP
// server: it must refuse it (RFC 8707 audience), and the SDK asks for an authorization for
// that server's own resource instead, which is not pursued.
//
// With --client-id-url, the provider names a client ID metadata document (the SDK uses it as
// the client_id, instead of /register, when discovery says client_id_metadata_document_supported);
// --callback-port then fixes the loopback listener's port, since the published document lists
// the exact redirect URI.

import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const { values: options } = parseArgs({
  options: {
    server: { type: "string" },
    other: { type: "string" },
    "client-id-url": { type: "string" },
    "callback-port": { type: "string" },
  },
});
if (!options.server) {
  console.error("usage: node mcp_client.mjs --server URL [--other URL] [--client-id-url URL --callback-port N]");
  process.exit(2);
}

const log = (entry) => process.stdout.write(JSON.stringify(entry) + "\n");

// What a request carried, without its secrets: the JSON-RPC method, the grant and resource.
function summary(body) {
  if (typeof body !== "string" && !(body instanceof URLSearchParams)) return {};
  const text = String(body);
  try {
    const json = JSON.parse(text);
    if (json.method) return { rpc: json.method };
    if (json.redirect_uris) {
      return { client_name: json.client_name, scope: json.scope, redirect_uris: json.redirect_uris };
    }
    return {};
  } catch {
    const form = new URLSearchParams(text);
    const shown = {};
    for (const name of ["grant_type", "client_id", "resource", "scope"]) {
      if (form.has(name)) shown[name] = form.get(name);
    }
    return shown;
  }
}

async function loggingFetch(url, init = {}) {
  const response = await fetch(url, init);
  const entry = { http: `${init.method ?? "GET"} ${url}`, status: response.status };
  Object.assign(entry, summary(init.body));
  const challenge = response.headers.get("www-authenticate");
  if (challenge) entry.challenge = challenge;
  if (String(url).endsWith("/register") && response.ok) {
    const registered = await response.clone().json();
    entry.registered = { client_id: registered.client_id, token_endpoint_auth_method: registered.token_endpoint_auth_method };
  }
  if (init.method === "POST" && /\/token$/.test(String(url))) {
    const answer = await response.clone().json();
    entry.answer = response.ok
      ? { token_type: answer.token_type, scope: answer.scope, expires_in: answer.expires_in, refresh_token: "refresh_token" in answer }
      : answer;
  }
  log(entry);
  return response;
}

// The loopback redirect URI: the browser's last request lands here with the code.
async function callbackListener(port = 0) {
  let deliver;
  const delivered = new Promise((resolve) => (deliver = resolve));
  const server = createServer((request, response) => {
    const url = new URL(request.url, "http://127.0.0.1");
    if (url.pathname !== "/callback") {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": "text/plain" }).end("You can close this window.");
    deliver(Object.fromEntries(url.searchParams));
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}/callback`, delivered, server };
}

// An in-memory OAuthClientProvider, as an MCP host keeps one per server.
class Provider {
  constructor(redirectUrl, { clientMetadataUrl, name = "primary" } = {}) {
    this.redirectUrl = redirectUrl;
    this.name = name;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this.saved = { client: undefined, tokens: undefined, verifier: undefined, discovery: undefined };
    this.counts = { registrations: 0, tokensSaved: 0, redirects: 0 };
    this.expectedState = undefined;
    this.authorizations = [];
  }
  get clientMetadata() {
    return {
      client_name: "authserver interop (MCP TypeScript SDK)",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this.expectedState = randomBytes(16).toString("base64url");
    return this.expectedState;
  }
  clientInformation() {
    return this.saved.client;
  }
  saveClientInformation(information) {
    this.counts.registrations += 1;
    this.saved.client = information;
  }
  tokens() {
    return this.saved.tokens;
  }
  saveTokens(tokens) {
    this.counts.tokensSaved += 1;
    this.saved.tokens = tokens;
  }
  redirectToAuthorization(url) {
    this.counts.redirects += 1;
    this.authorizations.push(url);
    const sent = url.searchParams;
    log({
      step: "authorize",
      provider: this.name,
      url: String(url),
      resource: sent.get("resource"),
      scope: sent.get("scope"),
      code_challenge_method: sent.get("code_challenge_method"),
    });
  }
  saveCodeVerifier(verifier) {
    this.saved.verifier = verifier;
  }
  codeVerifier() {
    return this.saved.verifier;
  }
  saveDiscoveryState(state) {
    this.saved.discovery = state;
  }
  discoveryState() {
    return this.saved.discovery;
  }
  // As when the access token expired: the next call is refused, and the SDK refreshes.
  dropAccessToken() {
    this.saved.tokens = { ...this.saved.tokens, access_token: "expired." + randomBytes(8).toString("hex") };
  }
}

function transportFor(url, provider) {
  return new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: loggingFetch });
}

// connect() as an MCP host does it: a 401 sends the user to sign in; once the code is back,
// finishAuth() redeems it and a new transport connects with the token.
async function connect(url, provider, callback) {
  const client = new Client({ name: "authserver-interop", version: "1.0.0" });
  const transport = transportFor(url, provider);
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  const answer = await callback.delivered;
  if (answer.error || answer.state !== provider.expectedState) {
    throw new Error(`authorization refused or state mismatch: ${JSON.stringify(answer.error ?? "state")}`);
  }
  log({ step: "callback", iss: answer.iss, state_ok: true });
  await transport.finishAuth(answer.code);
  const again = new Client({ name: "authserver-interop", version: "1.0.0" });
  await again.connect(transportFor(url, provider));
  return again;
}

async function add(client) {
  const result = await client.callTool({ name: "add", arguments: { a: 2, b: 40 } });
  const text = result.content.map((part) => part.text).join("");
  log({ step: "tools/call add(2, 40)", result: text, isError: result.isError ?? false });
  return text;
}

async function main() {
  const callback = await callbackListener(Number(options["callback-port"] ?? 0));
  try {
    const provider = new Provider(callback.url, { clientMetadataUrl: options["client-id-url"] });
    const client = await connect(options.server, provider, callback);
    const server = client.getServerVersion();
    log({ step: "connected", server: server?.name, protocol: client.getNegotiatedProtocolVersion?.() });
    const tools = await client.listTools();
    log({ step: "tools/list", tools: tools.tools.map((tool) => tool.name) });
    await add(client);

    provider.dropAccessToken();
    log({ step: "access token dropped (as if expired): the next call must refresh" });
    const before = provider.counts.tokensSaved;
    await add(client);
    log({
      step: "refreshed",
      tokens_saved: provider.counts.tokensSaved - before,
      registrations: provider.counts.registrations,
      sign_ins: provider.counts.redirects,
    });
    await client.close();

    if (options.other) {
      // Token passthrough (MCP authorization spec): this server's token at another server.
      const other = new Provider(callback.url, { name: "other" });
      other.saved.client = provider.saved.client;
      other.saved.tokens = { access_token: provider.saved.tokens.access_token, token_type: "Bearer" };
      const stranger = new Client({ name: "authserver-interop", version: "1.0.0" });
      try {
        await stranger.connect(transportFor(options.other, other));
        log({ step: "other server", accepted: true });
      } catch (error) {
        log({
          step: "other server",
          accepted: false,
          refused_with: error instanceof UnauthorizedError ? "UnauthorizedError" : String(error),
          asked_for: other.authorizations.map((url) => url.searchParams.get("resource")),
        });
      }
    }
    log({ step: "done" });
  } finally {
    callback.server.close();
  }
}

main().catch((error) => {
  log({ step: "failed", error: String(error?.stack ?? error) });
  process.exit(1);
});
