// Passkeys on the sign-in, second-step and account pages: the browser's WebAuthn ceremonies
// between our JSON endpoints (API.md, "Passkeys"). Served from our origin (the pages' CSP allows
// script-src 'self', no inline script). Without it, or in a browser without WebAuthn, the
// buttons stay hidden and the pages' forms (password, codes) work as they are.
(() => {
  "use strict";
  const root = document.querySelector("[data-passkeys]");
  if (!root || !window.PublicKeyCredential || !navigator.credentials) return;
  const csrf = root.dataset.csrf;
  const error = document.getElementById("passkey-error");
  const query = window.location.search;
  // The second-step page of a browser signed in with the password alone: a step-up, which
  // takes a passkey of the signed-in user and upgrades that sign-in.
  const stepUp = "stepUp" in root.dataset ? { step_up: true } : {};

  // base64url <-> ArrayBuffer, for browsers without the JSON helpers of WebAuthn Level 3.
  const decode = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
  };
  const encode = (buffer) => {
    let raw = "";
    for (const byte of new Uint8Array(buffer)) raw += String.fromCharCode(byte);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const withIds = (list) => (list || []).map((c) => ({ ...c, id: decode(c.id) }));
  const creationOptions = (json) =>
    PublicKeyCredential.parseCreationOptionsFromJSON
      ? PublicKeyCredential.parseCreationOptionsFromJSON(json)
      : {
          ...json,
          challenge: decode(json.challenge),
          user: { ...json.user, id: decode(json.user.id) },
          excludeCredentials: withIds(json.excludeCredentials),
        };
  const requestOptions = (json) =>
    PublicKeyCredential.parseRequestOptionsFromJSON
      ? PublicKeyCredential.parseRequestOptionsFromJSON(json)
      : { ...json, challenge: decode(json.challenge), allowCredentials: withIds(json.allowCredentials) };
  const toJSON = (credential) => {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const r = credential.response;
    const response = { clientDataJSON: encode(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = encode(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = encode(r.authenticatorData);
      response.signature = encode(r.signature);
      if (r.userHandle) response.userHandle = encode(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment,
    };
  };

  const post = async (url, body) => {
    const answer = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) throw new Error(data.error_description || root.dataset.failed);
    return data;
  };
  const fail = (problem) => {
    // A cancelled or timed-out browser dialog (NotAllowedError) says nothing useful itself.
    error.textContent = problem instanceof DOMException ? root.dataset.failed : problem.message;
    error.hidden = false;
  };
  const busy = (button, running) => {
    button.disabled = running;
    if (!running) return;
    error.hidden = true;
  };

  for (const hidden of document.querySelectorAll("[data-passkey-only]")) hidden.hidden = false;

  const signIn = document.getElementById("passkey-sign-in");
  if (signIn) {
    signIn.addEventListener("click", async () => {
      busy(signIn, true);
      try {
        const options = await post("/login/passkey/options" + query, stepUp);
        const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
        const done = await post("/login/passkey" + query, { ...toJSON(credential), ...stepUp });
        window.location.assign(done.redirect);
      } catch (problem) {
        fail(problem);
        busy(signIn, false);
      }
    });
  }

  const register = document.getElementById("passkey-register");
  if (register) {
    register.addEventListener("click", async () => {
      busy(register, true);
      try {
        const options = await post("/account/passkeys/options");
        const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
        const name = document.getElementById("passkey_name").value;
        await post("/account/passkeys", { ...toJSON(credential), name });
        window.location.assign("/account?done=passkey_added");
      } catch (problem) {
        fail(problem);
        busy(register, false);
      }
    });
  }
})();
