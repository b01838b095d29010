// The npm openid-client package (6.x), run by tests/interop/test_openid_client.py against a live
// authserver over loopback HTTP. Two steps, the browser step done by the test in between:
//
//   node openid_client.mjs start  '{"issuer", "client_id", "client_secret"?, "auth"?,
//                                     "redirect_uri", "prompt"?, "acr_values"?}'
//     -> prints {"url", "code_verifier", "state", "nonce"}
//   node openid_client.mjs finish '{..., "callback", "code_verifier", "state", "nonce"}'
//     -> prints {"claims", "userinfo", "email_verified", "refreshed", "refresh_token", "logout",
//        "server", "access_token", "refreshed_access_token"}, or
//        exits 1 with "refused: ..." on stderr
//
// Each step runs discovery() afresh, as a server-side client restarting between requests would.
import * as client from "openid-client";

const [step, json] = process.argv.slice(2);
const input = JSON.parse(json);

async function configuration() {
  const methods = {
    client_secret_basic: client.ClientSecretBasic,
    client_secret_post: client.ClientSecretPost,
  };
  const auth = input.client_secret ? methods[input.auth](input.client_secret) : client.None();
  // allowInsecureRequests: the server under test listens on plain HTTP on 127.0.0.1.
  return client.discovery(new URL(input.issuer), input.client_id, undefined, auth, {
    execute: [client.allowInsecureRequests],
  });
}

async function start() {
  const config = await configuration();
  const code_verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri,
    scope: "openid profile email",
    code_challenge: await client.calculatePKCECodeChallenge(code_verifier),
    code_challenge_method: "S256",
    state,
    nonce,
    ...(input.prompt ? { prompt: input.prompt } : {}),
    ...(input.acr_values ? { acr_values: input.acr_values } : {}),
  });
  return { url: url.href, code_verifier, state, nonce };
}

async function finish() {
  const config = await configuration();
  // Checks state, iss (RFC 9207: the discovery document says the server sends it), the PKCE
  // verifier, and the ID token (signature against the JWKS, iss, aud, exp, nonce).
  const tokens = await client.authorizationCodeGrant(config, new URL(input.callback), {
    pkceCodeVerifier: input.code_verifier,
    expectedState: input.state,
    expectedNonce: input.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  // RP-Initiated Logout: the URL the app would send the browser to, for the test to open.
  const logout = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: input.post_logout_redirect_uri ?? "",
    state: "bye",
  });
  return {
    claims,
    userinfo,
    // What an app reads to decide whether to trust the address: userinfo's, whose `sub` the
    // library has checked against the ID token's.
    email_verified: userinfo.email_verified,
    refreshed: refreshed.access_token !== tokens.access_token,
    refresh_token: refreshed.refresh_token,
    logout: logout.href,
    server: config.serverMetadata().issuer,
    // For the test to read their claims (amr, acr) before and after the refresh.
    access_token: tokens.access_token,
    refreshed_access_token: refreshed.access_token,
  };
}

try {
  const result = step === "start" ? await start() : await finish();
  process.stdout.write(JSON.stringify(result));
} catch (error) {
  const cause = error.cause ? ` (${error.cause.code ?? ""}: ${error.cause.message})` : "";
  const oauth = error.error ? ` [error=${error.error}]` : "";
  process.stderr.write(
    `refused: ${error.name}: ${error.code ?? ""}: ${error.message}${cause}${oauth}\n`,
  );
  process.exit(1);
}
