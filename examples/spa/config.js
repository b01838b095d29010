// Where the SPA finds authserver and the API it calls. Edit for your setup; the end-to-end test
// serves its own version of this file.
export default {
  authserver: "http://127.0.0.1:8000", // AUTHSERVER_ISSUER
  clientId: "my-spa", // a public client registered with --refresh-delivery cookie
  api: "http://127.0.0.1:8001/api/me", // any endpoint that wants `Authorization: Bearer <access token>`
};
