// Two npm clients with DPoP (RFC 9449), run by tests/interop/test_dpop_clients.py against a live
// authserver over loopback HTTP: openid-client 6 (getDPoPHandle, randomDPoPKeyPair) and the
// lower-level oauth4webapi it is built on, with its strict response checks (DPoP handle,
// validateAuthResponse, processAuthorizationCodeResponse, processRefreshTokenResponse,
// processUserInfoResponse). Two steps, the browser step done by the test in between:
//
//   node dpop_clients.mjs <openid-client|oauth4webapi> start '{"issuer", "client_id",
//       "client_secret"?, "redirect_uri"}'      -> {"url", "code_verifier", "state", "nonce"}
//   node dpop_clients.mjs <library> finish '{..., "callback", "code_verifier", "state", "nonce"}'
//     -> {"jkt", "extractable", "token_type", "access_token", "userinfo", "refreshed_token_type",
//         "refreshed_access_token", "refreshed_userinfo", "refresh_token", "sub",
//         "nonce_refusals"}
//     or exits 1 with "refused: ..." on stderr
//
// The key pair is made in `finish` with each library's own helper (non-extractable), and every
// call after the browser step (code exchange, userinfo, refresh, userinfo again) proves it.
// With server nonces on (RFC 9449 §8), `nonce_refusals` counts the server's `use_dpop_nonce`
// answers, which each library must have answered with a new proof carrying the nonce.
import { calculateJwkThumbprint } from "jose";
import * as oauth from "oauth4webapi";
import * as client from "openid-client";

const [library, step, json] = process.argv.slice(2);
const input = JSON.parse(json);
const SCOPE = "openid profile email";
// The server under test listens on plain HTTP on 127.0.0.1.
const insecure = { [oauth.allowInsecureRequests]: true };

// Both libraries call the global fetch: wrapped, it sees every answer the server gave.
let nonceRefusals = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await realFetch(...args);
  const challenge = response.headers.get("www-authenticate") ?? "";
  const body = await response.clone().json().catch(() => ({}));
  if (challenge.includes("use_dpop_nonce") || body.error === "use_dpop_nonce") nonceRefusals += 1;
  return response;
};

// oauth4webapi leaves `use_dpop_nonce` to its caller (openid-client retries by itself): its DPoP
// handle has kept the refusal's DPoP-Nonce, so the same request once more, with a new proof.
async function withNonceRetry(attempt) {
  try {
    return await attempt();
  } catch (error) {
    if (!oauth.isDPoPNonceError(error)) throw error;
    return attempt();
  }
}

async function thumbprint(keyPair) {
  return calculateJwkThumbprint(await crypto.subtle.exportKey("jwk", keyPair.publicKey));
}

// --- openid-client -----------------------------------------------------------------------

async function configuration() {
  const auth = input.client_secret ? client.ClientSecretBasic(input.client_secret) : client.None();
  return client.discovery(new URL(input.issuer), input.client_id, undefined, auth, {
    execute: [client.allowInsecureRequests],
  });
}

const openidClient = {
  async start() {
    const config = await configuration();
    const code_verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: input.redirect_uri,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(code_verifier),
      code_challenge_method: "S256",
      state,
      nonce,
    });
    return { url: url.href, code_verifier, state, nonce };
  },

  async finish() {
    const config = await configuration();
    const keyPair = await client.randomDPoPKeyPair("ES256");
    const DPoP = client.getDPoPHandle(config, keyPair);
    const tokens = await client.authorizationCodeGrant(
      config,
      new URL(input.callback),
      {
        pkceCodeVerifier: input.code_verifier,
        expectedState: input.state,
        expectedNonce: input.nonce,
        idTokenExpected: true,
      },
      undefined,
      { DPoP },
    );
    const sub = tokens.claims().sub;
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, sub, { DPoP });
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, {
      DPoP,
    });
    const again = await client.fetchUserInfo(config, refreshed.access_token, sub, { DPoP });
    return answer(keyPair, sub, tokens, userinfo, refreshed, again);
  },
};

// --- oauth4webapi ------------------------------------------------------------------------

async function server() {
  const issuer = new URL(input.issuer);
  const response = await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...insecure });
  return oauth.processDiscoveryResponse(issuer, response);
}

const oauth4webapi = {
  async start() {
    const as = await server();
    const code_verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const url = new URL(as.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: input.client_id,
      redirect_uri: input.redirect_uri,
      scope: SCOPE,
      code_challenge: await oauth.calculatePKCECodeChallenge(code_verifier),
      code_challenge_method: "S256",
      state,
      nonce,
    }).toString();
    return { url: url.href, code_verifier, state, nonce };
  },

  async finish() {
    const as = await server();
    const registered = { client_id: input.client_id };
    const auth = input.client_secret ? oauth.ClientSecretBasic(input.client_secret) : oauth.None();
    const keyPair = await oauth.generateKeyPair("ES256");
    const DPoP = oauth.DPoP(registered, keyPair);
    const options = { DPoP, ...insecure };
    // state and iss (RFC 9207: the metadata says the server sends it) checked here.
    const params = oauth.validateAuthResponse(as, registered, new URL(input.callback), input.state);
    const tokens = await withNonceRetry(async () =>
      oauth.processAuthorizationCodeResponse(
        as,
        registered,
        await oauth.authorizationCodeGrantRequest(
          as, registered, auth, params, input.redirect_uri, input.code_verifier, options,
        ),
        { expectedNonce: input.nonce, requireIdToken: true },
      ),
    );
    const sub = oauth.getValidatedIdTokenClaims(tokens).sub;
    const userinfo = await withNonceRetry(async () =>
      oauth.processUserInfoResponse(
        as, registered, sub,
        await oauth.userInfoRequest(as, registered, tokens.access_token, options),
      ),
    );
    const refreshed = await withNonceRetry(async () =>
      oauth.processRefreshTokenResponse(
        as,
        registered,
        await oauth.refreshTokenGrantRequest(as, registered, auth, tokens.refresh_token, options),
      ),
    );
    const again = await withNonceRetry(async () =>
      oauth.processUserInfoResponse(
        as, registered, sub,
        await oauth.userInfoRequest(as, registered, refreshed.access_token, options),
      ),
    );
    return answer(keyPair, sub, tokens, userinfo, refreshed, again);
  },
};

async function answer(keyPair, sub, tokens, userinfo, refreshed, again) {
  return {
    jkt: await thumbprint(keyPair),
    extractable: keyPair.privateKey.extractable,
    sub,
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    userinfo,
    refreshed_token_type: refreshed.token_type,
    refreshed_access_token: refreshed.access_token,
    refreshed_userinfo: again,
    refresh_token: refreshed.refresh_token,
    nonce_refusals: nonceRefusals,
  };
}

try {
  const chosen = { "openid-client": openidClient, oauth4webapi }[library];
  const result = await chosen[step]();
  process.stdout.write(JSON.stringify(result));
} catch (error) {
  const cause = error.cause ? ` (${error.cause.code ?? ""}: ${error.cause.message})` : "";
  const code = error.error ? ` [error=${error.error}]` : "";
  process.stderr.write(`refused: ${error.name}: ${error.code ?? ""}: ${error.message}${cause}${code}\n`);
  process.exit(1);
}
