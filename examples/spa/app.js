// A single page that signs in against authserver with the authorization code flow and PKCE, the
// refresh token kept in an HttpOnly cookie.
//
// - The password is never typed here: "Sign in" sends the browser to authserver's own sign-in
//   page (GET /authorize), which comes back to this page with a one-time code. A script on this
//   page, ours or injected, never sees the password, and a second app of the same authserver
//   signs in without asking again (single sign-on).
// - PKCE (RFC 7636, S256): the code is worthless without the verifier, which never leaves this
//   tab. The verifier, the state and the nonce wait in sessionStorage for the one round trip (the
//   page is unloaded meanwhile, so a variable cannot hold them) and are removed as soon as the
//   browser is back, before anything else happens.
// - The access token lives in a variable of this module: never localStorage or sessionStorage,
//   where any script (an XSS bug, a compromised dependency) could read it at leisure.
// - The refresh token is never seen here: authserver sets it as an HttpOnly cookie in its answer
//   to the code exchange and reads it back on POST /refresh and /logout, which we call with
//   `credentials: "include"`.
// - On load we refresh once (a reload keeps the session), and again shortly before the access
//   token expires. Refreshes are serialised across this origin's tabs with the Web Locks API:
//   every refresh spends the cookie's token, so two tabs refreshing at the same instant would
//   present the same token twice, and authserver treats a spent token as stolen.
// - DPoP (RFC 9449, dpop.js; on unless config.dpop is false): every token is bound to a key
//   pair this page cannot read back, so a token taken out of this page works nowhere else.
//   When authserver or the API asks for server nonces (`use_dpop_nonce`), the proof is made
//   again once with the nonce the answer brought, and later proofs carry the latest one.
import config from "./config.js";
import * as dpop from "./dpop.js";

const REFRESH_LOCK = "authserver-refresh";
const PENDING = "authserver-sign-in"; // sessionStorage key, for the round trip only
const RETRY_SECONDS = 30; // after a 429, a 5xx or a network failure
const tabs = "BroadcastChannel" in self ? new BroadcastChannel("authserver-spa") : null;

const useDpop = config.dpop !== false;

let accessToken = null;
let tokenType = "Bearer"; // "DPoP" when authserver bound the token to our key
let idToken = null; // only as id_token_hint for /end-session; it is not a credential
let timer = null;

const $ = (id) => document.getElementById(id);

function form(fields = {}) {
  return new URLSearchParams({ client_id: config.clientId, ...fields });
}

async function post(path, body, extra = async () => ({})) {
  const url = `${config.authserver}${path}`;
  // A proof on every call that issues tokens: authserver binds the new ones to our key, and a
  // bound refresh token rotates only with a proof of that key. (/logout gets one from `extra`
  // when the token it ends is bound.)
  const proving = useDpop && path !== "/logout";
  const headers = async () =>
    proving ? { ...(await extra()), DPoP: await dpop.proof("POST", url) } : extra();
  // The browser adds Origin; authserver refuses (403) cookie requests from other origins.
  const response = await withProof(url, { method: "POST", credentials: "include", body }, headers);
  const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
  return { response, answer };
}

// fetch() with the headers `headers()` makes (a new DPoP proof each time it is called), sent
// once more when a proof was refused for a reason the answer itself puts right: the server
// wants its nonce in the proof (RFC 9449 §8, §9; the answer's DPoP-Nonce), or authserver's
// clock is far from this device's (its Date). Nothing was spent: the proof is checked first.
async function withProof(url, init, headers) {
  let proven = false;
  const send = async () => {
    const sent = await headers();
    proven = "DPoP" in sent;
    const response = await fetch(url, { ...init, headers: sent });
    if (proven) dpop.learnNonce(response); // every answer's fresh nonce, for the next proof
    return response;
  };
  let response = await send();
  if (proven && (await proofToRedo(response))) response = await send();
  return response;
}

async function proofToRedo(response) {
  // Only authserver's clock dates our proofs (an API's Date, were it exposed, is not its).
  const fromAuthserver = new URL(response.url).origin === new URL(config.authserver).origin;
  const moved = fromAuthserver && dpop.learnTime(response);
  if (await dpop.nonceRequested(response)) return true;
  return moved && (await errorOf(response)) === "invalid_dpop_proof";
}

async function errorOf(response) {
  const answer = await response.clone().json().catch(() => ({}));
  return answer.error;
}

function withRefreshLock(task) {
  return navigator.locks ? navigator.locks.request(REFRESH_LOCK, task) : task();
}

function randomString() {
  // 32 bytes: 256 bits, and 43 characters, the shortest verifier RFC 7636 allows.
  return dpop.base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function claims(token) {
  // For display and the nonce check only: the API verifies the access token's signature, and
  // the ID token came straight from authserver over the connection we opened (OpenID Connect
  // Core §3.1.3.7 lets the code flow rely on that instead of the signature).
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload));
}

function show(state, status, error = "") {
  $("app").dataset.state = state;
  $("status").textContent = status;
  $("error").textContent = error;
  $("signed-out").hidden = state !== "signed-out";
  $("session").hidden = state !== "signed-in";
}

function signedIn(answer) {
  accessToken = answer.access_token;
  tokenType = answer.token_type === "DPoP" ? "DPoP" : "Bearer";
  const { sub, exp } = claims(accessToken);
  show("signed-in", `Signed in as ${sub}; access token valid until ${new Date(exp * 1000).toLocaleTimeString()}.`);
  // Refresh a minute before expiry (half-way for very short tokens).
  schedule(answer.expires_in - Math.min(60, answer.expires_in / 2));
}

function signedOut(error = "") {
  accessToken = null;
  idToken = null;
  clearTimeout(timer);
  $("api-result").textContent = "";
  show("signed-out", "Signed out.", error);
}

function schedule(seconds) {
  clearTimeout(timer);
  timer = setTimeout(() => refresh(), seconds * 1000);
}

function retryAfter(response) {
  return Number(response.headers.get("Retry-After")) || RETRY_SECONDS;
}

// Returns true when we hold a fresh access token afterwards.
async function refresh({ quiet = false } = {}) {
  return withRefreshLock(async () => {
    let result;
    try {
      result = await post("/refresh", form());
    } catch {
      return transientFailure("authserver cannot be reached.", RETRY_SECONDS);
    }
    const { response, answer } = result;
    if (response.ok) {
      signedIn(answer);
      return true;
    }
    if (response.status === 429 || response.status >= 500) {
      return transientFailure(answer.error_description || "authserver is busy.", retryAfter(response));
    }
    // 400 invalid_grant: the session is over (signed out, expired, revoked, or the cookie now
    // holds another app's session). No cookie at all answers 400 invalid_request, which on page
    // load just means "not signed in yet".
    signedOut(quiet ? "" : answer.error_description || "Your session has ended.");
    return false;
  });
}

function transientFailure(message, seconds) {
  if (accessToken === null) {
    signedOut(message);
  } else {
    $("error").textContent = `${message} Trying again in ${seconds} s.`;
    schedule(seconds);
  }
  return false;
}

async function signIn() {
  const pending = { verifier: randomString(), state: randomString(), nonce: randomString() };
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pending.verifier));
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: config.redirectUri,
    scope: config.scope,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: dpop.base64url(digest),
    code_challenge_method: "S256",
  });
  location.assign(`${config.authserver}/authorize?${query}`);
}

// The browser is back from /authorize with `?code=&state=&iss=` (or `?error=&state=&iss=`).
async function finishSignIn(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  // The code must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", config.redirectUri);
  // CSRF: an answer to a request this tab did not make (a link planted elsewhere) has no
  // pending state, or another one.
  if (pending === null || params.get("state") !== pending.state) {
    return signedOut("This sign-in answer was not for this page. Sign in again.");
  }
  // Mix-up (RFC 9207): the answer must come from the authorization server we sent it to.
  if (params.get("iss") !== config.authserver) {
    return signedOut("This sign-in answer came from an unexpected server. Sign in again.");
  }
  if (params.has("error")) {
    return signedOut(params.get("error_description") || `Sign-in failed: ${params.get("error")}.`);
  }
  // The exchange sets the refresh cookie, which every refresh spends: under the same lock.
  const { response, answer } = await withRefreshLock(() =>
    post(
      "/token",
      form({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: config.redirectUri,
        code_verifier: pending.verifier,
      }),
    ),
  );
  if (!response.ok) {
    return signedOut(answer.error_description || "Sign-in failed.");
  }
  // A replayed ID token would carry another request's nonce.
  if (answer.id_token && claims(answer.id_token).nonce !== pending.nonce) {
    return signedOut("The sign-in answer did not match this request. Sign in again.");
  }
  idToken = answer.id_token || null;
  signedIn(answer);
  tabs?.postMessage("login");
}

async function authorization(method, url) {
  // A bound token goes with the DPoP scheme and a new proof naming it (`ath`); the API refuses
  // it as a Bearer token.
  const headers = { Authorization: `${tokenType} ${accessToken}` };
  if (tokenType === "DPoP") headers.DPoP = await dpop.proof(method, url, accessToken);
  return headers;
}

async function callApi() {
  const call = () => withProof(config.api, {}, () => authorization("GET", config.api));
  let response = await call();
  // Expired or revoked (a tab that slept through its timer): one refresh, one retry.
  if (response.status === 401 && (await refresh())) response = await call();
  $("api-result").textContent = `${response.status}\n${await response.text()}`;
}

async function signOut() {
  // First this app's session: /logout revokes its refresh family, clears the cookie and denies
  // the access token at once (an API checking the deny list refuses it from now on). A bound
  // token goes as at the API, with a proof naming it: as a Bearer token it is refused (401).
  const logoutUrl = `${config.authserver}/logout`;
  await withRefreshLock(async () =>
    post("/logout", form(), async () => (accessToken ? authorization("POST", logoutUrl) : {})),
  );
  const hint = idToken;
  signedOut();
  tabs?.postMessage("logout");
  // Then the single sign-on session (RP-initiated logout): without this, the next "Sign in"
  // here or in any other app would get through without the password. authserver ends the login
  // session and every session it started, then sends the browser back here.
  const query = new URLSearchParams({
    client_id: config.clientId,
    post_logout_redirect_uri: config.redirectUri,
  });
  // After a reload the page has no ID token (a refresh returns none): without the hint
  // authserver cannot tell this request from another site's, so it asks the user to confirm.
  if (hint) query.set("id_token_hint", hint);
  location.assign(`${config.authserver}/end-session?${query}`);
}

if (tabs) {
  tabs.onmessage = ({ data }) => {
    if (data === "logout") signedOut();
    if (data === "login" && accessToken === null) refresh({ quiet: true });
  };
}

$("sign-in").addEventListener("click", signIn);
$("call-api").addEventListener("click", callApi);
$("refresh").addEventListener("click", () => refresh());
$("logout").addEventListener("click", signOut);

const params = new URLSearchParams(location.search);
if (params.has("code") || params.has("error")) {
  finishSignIn(params);
} else {
  refresh({ quiet: true });
}
