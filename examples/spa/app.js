// A single page that logs in against authserver with the refresh token in an HttpOnly cookie.
//
// - The access token lives in a variable of this module: never localStorage or sessionStorage,
//   where any script (an XSS bug, a compromised dependency) could read it at leisure.
// - The refresh token is never seen here: authserver sets it as an HttpOnly cookie and reads it
//   back on POST /refresh and /logout, which we call with `credentials: "include"`.
// - On load we refresh once (a reload keeps the session), and again shortly before the access
//   token expires. Refreshes are serialised across this origin's tabs with the Web Locks API:
//   every refresh spends the cookie's token, so two tabs refreshing at the same instant would
//   present the same token twice, and authserver treats a spent token as stolen.
import config from "./config.js";

const REFRESH_LOCK = "authserver-refresh";
const RETRY_SECONDS = 30; // after a 429, a 5xx or a network failure
const tabs = "BroadcastChannel" in self ? new BroadcastChannel("authserver-spa") : null;

let accessToken = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function form(fields = {}) {
  return new URLSearchParams({ client_id: config.clientId, ...fields });
}

async function post(path, body, headers = {}) {
  // The browser adds Origin; authserver refuses (403) cookie requests from other origins.
  const response = await fetch(`${config.authserver}${path}`, {
    method: "POST",
    credentials: "include",
    headers,
    body,
  });
  const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
  return { response, answer };
}

function withRefreshLock(task) {
  return navigator.locks ? navigator.locks.request(REFRESH_LOCK, task) : task();
}

function claims(token) {
  // For display only: the API verifies the signature, the page does not need to.
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload));
}

function show(state, status, error = "") {
  $("app").dataset.state = state;
  $("status").textContent = status;
  $("error").textContent = error;
  $("login").hidden = state !== "signed-out";
  $("session").hidden = state !== "signed-in";
}

function signedIn(answer) {
  accessToken = answer.access_token;
  const { sub, exp } = claims(accessToken);
  show("signed-in", `Signed in as ${sub}; access token valid until ${new Date(exp * 1000).toLocaleTimeString()}.`);
  // Refresh a minute before expiry (half-way for very short tokens).
  schedule(answer.expires_in - Math.min(60, answer.expires_in / 2));
}

function signedOut(error = "") {
  accessToken = null;
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
    // 400 invalid_grant: the session is over (logged out, expired, revoked). No cookie at all
    // answers 400 invalid_request, which on page load just means "not logged in yet".
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

async function logIn(event) {
  event.preventDefault();
  const fields = new FormData(event.target);
  const { response, answer } = await withRefreshLock(() =>
    post(
      "/token",
      form({ grant_type: "password", username: fields.get("username"), password: fields.get("password") }),
    ),
  );
  if (response.ok) {
    event.target.reset();
    signedIn(answer);
    tabs?.postMessage("login");
  } else if (response.status === 429) {
    signedOut(`Too many attempts: try again in ${retryAfter(response)} s.`);
  } else {
    signedOut(answer.error_description || "Login failed.");
  }
}

async function callApi() {
  const call = () => fetch(config.api, { headers: { Authorization: `Bearer ${accessToken}` } });
  let response = await call();
  // Expired or revoked (a tab that slept through its timer): one refresh, one retry.
  if (response.status === 401 && (await refresh())) response = await call();
  $("api-result").textContent = `${response.status}\n${await response.text()}`;
}

async function logOut() {
  // Revokes the whole session server-side and clears the cookie; the Bearer token is denied too.
  await withRefreshLock(() =>
    post("/logout", form(), accessToken ? { Authorization: `Bearer ${accessToken}` } : {}),
  );
  signedOut();
  tabs?.postMessage("logout");
}

if (tabs) {
  tabs.onmessage = ({ data }) => {
    if (data === "logout") signedOut();
    if (data === "login" && accessToken === null) refresh({ quiet: true });
  };
}

$("login").addEventListener("submit", logIn);
$("call-api").addEventListener("click", callApi);
$("refresh").addEventListener("click", () => refresh());
$("logout").addEventListener("click", logOut);
refresh({ quiet: true });
