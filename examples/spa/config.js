// Where the SPA finds authserver and the API it calls. Edit for your setup; the end-to-end test
// serves its own version of this file.
export default {
  authserver: "http://127.0.0.1:8000", // AUTHSERVER_ISSUER: the callback's `iss` must equal it
  // A public client registered with --grant authorization_code --grant refresh_token
  // --refresh-delivery cookie (without refresh_token its session could not be refreshed).
  clientId: "my-spa",
  // This page's own address, registered with both --redirect-uri and
  // --post-logout-redirect-uri: authserver compares them as exact strings.
  redirectUri: "http://127.0.0.1:5173/",
  scope: "openid profile",
  api: "http://127.0.0.1:8001/api/me", // checks tokens with authserver_verify (Bearer or DPoP)
  // DPoP (RFC 9449): bind every token to a non-extractable key of this page (dpop.js). false:
  // plain bearer tokens, for an authserver or an API that does not take DPoP.
  dpop: true,
};
