// DPoP (RFC 9449): the tokens this page gets are bound to a key pair that lives only here, so a
// token stolen from this page's memory (an XSS bug, a log, a proxy) is useless anywhere else.
//
// - The key pair is ES256 (P-256), made by WebCrypto with `extractable: false`: the browser
//   signs with the private key but never hands its bytes to any script, ours included.
// - It is kept in IndexedDB, which stores the CryptoKey object itself (structured clone), still
//   non-extractable: a reload, a new tab of this origin and the refresh cookie's next use all
//   present the same key, as authserver requires of a bound refresh token.
// - Every request to /token, /refresh and the API carries a fresh proof: a JWT signed by that
//   key naming the method (`htm`), the URL without query and fragment (`htu`), the time (`iat`),
//   a random `jti`, and at the API the access token's hash (`ath`).
// - Server nonces (RFC 9449 §8, §9), when authserver or the API asks for them: the latest
//   `DPoP-Nonce` each server sent (kept in sessionStorage) goes into the next proof for that
//   server (`nonce`).

const DB = "authserver-dpop";
const STORE = "keys";
const KEY_ID = "dpop";
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" };

let keyPair = null; // { privateKey, publicKey, jwk }, loaded once per page
let loading = null;
// Seconds to add to this device's clock to get authserver's. A proof's `iat` must be within
// 60 s before and 5 s after the server's time (RFC 9449 §11.1: else it could have been made
// in advance), and a device's clock may be minutes off: we go by authserver's `Date` header.
let skew = 0;
const SKEW_TOLERANCE = 5;
// The latest `DPoP-Nonce` per server (origin), in sessionStorage: authserver's and the API's
// are their own, and each takes only its own. Every answer to a request with a proof brings a
// fresh one, so keeping the latest means a nonce is refused only after a long idle spell. Not
// in a variable: the page is loaded anew after every sign-in round trip and reload, and each
// load would begin with a refused request per server. A nonce is no secret (any script of this
// origin gets one by asking), so storage readable by scripts is fine for it.
const NONCES = "authserver-dpop-nonces";

function nonces() {
  try {
    return JSON.parse(sessionStorage.getItem(NONCES) ?? "{}");
  } catch {
    return {};
  }
}

export function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

function text(value) {
  return base64url(new TextEncoder().encode(JSON.stringify(value)));
}

function request(idbRequest) {
  return new Promise((resolve, reject) => {
    idbRequest.onsuccess = () => resolve(idbRequest.result);
    idbRequest.onerror = () => reject(idbRequest.error);
  });
}

async function database() {
  const opening = indexedDB.open(DB, 1);
  opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
  return request(opening);
}

async function loadOrCreate() {
  const db = await database();
  try {
    const read = db.transaction(STORE).objectStore(STORE).get(KEY_ID);
    let pair = await request(read);
    if (!pair) {
      // Only the private key is non-extractable; a public key always is extractable (it must
      // go into every proof's header).
      pair = await crypto.subtle.generateKey(ALGORITHM, false, ["sign", "verify"]);
      // `add`, not `put`: when two tabs made a key at once, the second add fails and that tab
      // reads the first one's, so the origin keeps exactly one.
      try {
        await request(db.transaction(STORE, "readwrite").objectStore(STORE).add(pair, KEY_ID));
      } catch {
        pair = await request(db.transaction(STORE).objectStore(STORE).get(KEY_ID));
      }
    }
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    return { privateKey: pair.privateKey, publicKey: pair.publicKey, jwk: { kty, crv, x, y } };
  } finally {
    db.close();
  }
}

// The page's key pair (made on first use). Exported for the end-to-end test, which checks that
// the private key cannot be read back.
export function key() {
  if (keyPair) return Promise.resolve(keyPair);
  loading ??= loadOrCreate().then((pair) => (keyPair = pair));
  return loading;
}

// Learns authserver's time from one of its answers (`Date`, exposed to us by its CORS). True
// when it moved our idea of it by more than the server's tolerance: a proof it refused for
// its `iat` is then worth sending once more.
export function learnTime(response) {
  const date = Date.parse(response.headers.get("Date") ?? "");
  if (Number.isNaN(date)) return false;
  const measured = Math.round((date - Date.now()) / 1000);
  const moved = Math.abs(measured - skew) > SKEW_TOLERANCE;
  // `Date` has whole seconds and arrives a little late: within the tolerance, keep what we had.
  if (moved) skew = measured;
  return moved;
}

// Keeps the server's `DPoP-Nonce` from one of its answers (its CORS must expose the header).
export function learnNonce(response) {
  const nonce = response.headers.get("DPoP-Nonce");
  const origin = new URL(response.url).origin;
  const known = nonces();
  if (!nonce || known[origin] === nonce) return;
  sessionStorage.setItem(NONCES, JSON.stringify({ ...known, [origin]: nonce }));
}

// True when the server refused the proof for its nonce (missing, stale or from another server):
// `400 use_dpop_nonce` at /token and /refresh, `401` with it where an access token went (§8,
// §9). Its `DPoP-Nonce` is already kept; a new proof with it is worth sending once.
export async function nonceRequested(response) {
  if (response.status !== 400 && response.status !== 401) return false;
  // The error is in the body too: a page reads WWW-Authenticate only if CORS exposes it.
  const challenge = response.headers.get("WWW-Authenticate") ?? "";
  if (challenge.includes('error="use_dpop_nonce"')) return true;
  const answer = await response.clone().json().catch(() => ({}));
  return answer.error === "use_dpop_nonce";
}

// RFC 7638 thumbprint of the public key: what authserver puts in the token's `cnf.jkt`.
export async function thumbprint() {
  const { jwk } = await key();
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical)));
}

// A proof for one request. `url` may carry a query; `htu` leaves it out (RFC 9449 §4.2).
export async function proof(method, url, accessToken = null) {
  const { privateKey, jwk } = await key();
  const target = new URL(url);
  const claims = {
    jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
    htm: method,
    htu: `${target.origin}${target.pathname}`,
    iat: Math.floor(Date.now() / 1000) + skew,
  };
  const nonce = nonces()[target.origin];
  if (typeof nonce === "string") claims.nonce = nonce;
  if (accessToken !== null) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(accessToken));
    claims.ath = base64url(digest);
  }
  const input = `${text({ typ: "dpop+jwt", alg: "ES256", jwk })}.${text(claims)}`;
  // WebCrypto's ECDSA signature is already JWS's R || S (64 bytes), not DER.
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    privateKey,
    new TextEncoder().encode(input),
  );
  return `${input}.${base64url(signature)}`;
}
