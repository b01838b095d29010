// A minimal Express app signed in through express-openid-connect (Auth0's middleware, npm),
// run by tests/interop/test_express_openid_connect.py against a live authserver over
// loopback HTTP:
//
//   node express_app.mjs '{"issuer", "base_url", "port", "client_id", "client_secret", "alg",
//                          "defaults"?}'
//     -> prints "listening" once it accepts connections; serves until killed.
//
// The library's own routes: /login (to the authorization endpoint), /callback (the redirect
// URI), /logout. `/` greets the signed-in user with the ID token's `name` and `email`
// (`req.oidc.user`); `/userinfo` shows what the library fetches from the userinfo endpoint.
// With "defaults": true the app keeps the library's default response_type, to show why not.
import { randomBytes } from "node:crypto";
import express from "express";
import expressOpenidConnect from "express-openid-connect";

const { auth } = expressOpenidConnect;
const input = JSON.parse(process.argv[2]);
const app = express();

app.use(
  auth({
    issuerBaseURL: input.issuer,
    baseURL: input.base_url,
    clientID: input.client_id,
    clientSecret: input.client_secret,
    secret: randomBytes(32).toString("hex"), // encrypts the app's session cookie
    authRequired: false,
    // The library's default, RS256; EdDSA when the server signs with Ed25519.
    idTokenSigningAlg: input.alg,
    // The one setting the defaults need: express-openid-connect's default response_type is
    // `id_token` (implicit, with response_mode `form_post`), which authserver does not offer
    // (response_types_supported: ["code"]). The scope stays the default, `openid profile email`.
    authorizationParams: input.defaults ? undefined : { response_type: "code" },
  }),
);

app.get("/", (req, res) => {
  res.type("text/plain");
  if (!req.oidc.isAuthenticated()) {
    res.send("Signed out");
    return;
  }
  const { name, email } = req.oidc.user;
  res.send(`Hello, ${name} <${email}>`);
});

app.get("/userinfo", async (req, res) => {
  res.json(await req.oidc.fetchUserInfo());
});

// What the library refused, as text the test can show (Express's own page is HTML).
app.use((error, req, res, next) => {
  res.status(error.status ?? 500).type("text/plain");
  res.send(`refused: ${error.name}: ${error.message} ${error.error_description ?? ""}`);
});

app.listen(input.port, "127.0.0.1", () => process.stdout.write("listening\n"));
